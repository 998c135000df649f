"""Shared fixtures: tiny reference checkpoints built with transformers (the test oracle).

transformers is the oracle: tests import it, the mmspeech package never does. A test that needs it
is marked ``oracle`` — by hand (``@pytest.mark.oracle``, or ``pytestmark`` for a whole module) or
automatically when it uses an oracle-built fixture (:data:`ORACLE_FIXTURES`) — and the rest of the
suite runs without it: ``MMSPEECH_TEST_WITHOUT_ORACLE=1 pytest -m "not oracle"`` blocks the import
of transformers and fails any unmarked test that still reaches for it (scripts/test.sh runs this).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

WITHOUT_ORACLE = os.environ.get("MMSPEECH_TEST_WITHOUT_ORACLE") == "1"


class _NoOracle:
    """A meta-path finder that makes ``import transformers`` fail as if it were not installed.

    (Not ``sys.modules["transformers"] = None``: libraries such as datasets take ``"transformers"
    in sys.modules`` to mean it was imported, and then import it.)
    """

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "transformers" or name.startswith("transformers."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: no-oracle run)")


if WITHOUT_ORACLE:
    for _name in [n for n in sys.modules if n == "transformers" or n.startswith("transformers.")]:
        del sys.modules[_name]  # a plugin imported it first: forget it, then refuse it
    sys.meta_path.insert(0, _NoOracle())
logging.getLogger("transformers").setLevel(logging.ERROR)

# Fixtures built by the oracle: a test using one is marked ``oracle`` automatically.
ORACLE_FIXTURES = frozenset({"oracle", "make_checkpoint", "mms_dir", "server_models"})


def oracle() -> Any:
    """The transformers module; skips the calling test when it is not installed."""
    return pytest.importorskip("transformers", reason="transformers is the test oracle")


@pytest.fixture(scope="session")
def demo() -> tuple[Path, Path]:
    """The bundled demo checkpoints (ASR, LID); skips where this installation lacks them."""
    from mmspeech.demo import demo_checkpoint
    from mmspeech.errors import CheckpointNotFoundError

    try:
        return demo_checkpoint("asr"), demo_checkpoint("lid")
    except CheckpointNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(name="oracle", scope="session")
def oracle_fixture() -> Any:
    """The transformers module (skips the test without it)."""
    return oracle()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ORACLE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.oracle)


def _needs_oracle(report: pytest.CollectReport | pytest.TestReport) -> bool:
    return report.skipped and "transformers" in str(report.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Without the oracle, an unmarked test that skips for want of transformers fails instead:
    the non-oracle subset must not shrink silently."""
    outcome = yield
    report = outcome.get_result()
    if WITHOUT_ORACLE and _needs_oracle(report) and item.get_closest_marker("oracle") is None:
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} needs transformers but is not marked oracle"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """The same for a module skipped at import: its ``pytestmark`` must name ``oracle``."""
    outcome = yield
    report = outcome.get_result()
    path = getattr(collector, "path", None)
    if (
        WITHOUT_ORACLE
        and isinstance(collector, pytest.Module)
        and _needs_oracle(report)
        and path is not None
        and "pytest.mark.oracle" not in path.read_text()
    ):
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} needs transformers but is not marked oracle"


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """The CLI's setup_logging (basicConfig(force=True)) binds a root handler to the sys.stderr
    of the moment, which pytest closes after the test: restore the root logger's handlers and
    level, so later log records do not hit a closed stream ("--- Logging error ---")."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "conv_dim": (16, 16, 16),
    "conv_stride": (5, 2, 2),
    "conv_kernel": (10, 3, 3),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "vocab_size": 12,
    "classifier_proj_size": 24,
}

# The architecture variants the parity tests cover (family, config changes).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "w2v2-base": ("wav2vec2", {}),
    "w2v2-stable": (
        "wav2vec2",
        {"do_stable_layer_norm": True, "feat_extract_norm": "layer", "conv_bias": True},
    ),
    "mms": (
        "wav2vec2",
        {
            "do_stable_layer_norm": True,
            "feat_extract_norm": "layer",
            "conv_bias": True,
            "adapter_attn_dim": 8,
            "num_conv_pos_embeddings": 15,
            "hidden_act": "gelu_new",
        },
    ),
    "hubert-base": ("hubert", {}),
    "hubert-bn": (
        "hubert",
        {"feat_proj_layer_norm": False, "conv_pos_batch_norm": True, "conv_bias": True},
    ),
    "hubert-stable": ("hubert", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
}

HEADS = {
    ("wav2vec2", "bare"): "Wav2Vec2Model",
    ("wav2vec2", "ctc"): "Wav2Vec2ForCTC",
    ("wav2vec2", "cls"): "Wav2Vec2ForSequenceClassification",
    ("hubert", "bare"): "HubertModel",
    ("hubert", "ctc"): "HubertForCTC",
    ("hubert", "cls"): "HubertForSequenceClassification",
}


def perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Move every weight away from its init (LayerNorm ones, zero biases, BN stats) so parity
    tests exercise every tensor."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))


def reference_model(family: str, head: str, seed: int = 0, **changes: Any) -> Any:
    """A tiny, perturbed, eval-mode transformers model."""
    transformers = oracle()
    config_class = (
        transformers.Wav2Vec2Config if family == "wav2vec2" else transformers.HubertConfig
    )
    config = config_class(**{**TINY, **changes})
    if head == "cls":
        config.id2label = {0: "eng", 1: "fra", 2: "deu"}
        config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(seed)
    model = getattr(transformers, HEADS[family, head])(config).eval()
    perturb(model, seed)
    return model


@pytest.fixture
def make_checkpoint(tmp_path: Path) -> Callable[..., tuple[Any, Path]]:
    """Build a tiny reference model and save it; returns (reference model, directory)."""
    counter = iter(range(1000))

    def build(variant: str, head: str = "ctc", seed: int = 0, **changes: Any) -> tuple[Any, Path]:
        family, base_changes = VARIANTS[variant]
        model = reference_model(family, head, seed, **{**base_changes, **changes})
        directory = tmp_path / f"{variant}-{head}-{next(counter)}"
        model.save_pretrained(directory)
        return model, directory

    return build


def waveforms(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero-padded (B, max_len) batch of random waveforms and its attention mask."""
    generator = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        batch[row, :length] = torch.randn(length, generator=generator)
        mask[row, :length] = 1
    return batch, mask


def max_diff(a: Any, b: Any) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) if a.size else 0.0


MMS = {
    "do_stable_layer_norm": True,
    "feat_extract_norm": "layer",
    "conv_bias": True,
    "adapter_attn_dim": 8,
}
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "|"]
LETTERS = {"eng": list("etaoinshrdl"), "fra": list("esaitnruloé"), "deu": list("enisratdhuä")}


def vocab_for(letters: list[str]) -> dict[str, int]:
    return {token: index for index, token in enumerate(SPECIALS + letters)}


def build_mms_checkpoint(directory: Path) -> Path:
    """A complete MMS-style ASR checkpoint: base + adapters + nested vocab + processor files."""
    transformers = oracle()
    sizes = {lang: len(SPECIALS) + len(letters) for lang, letters in LETTERS.items()}
    base = reference_model("wav2vec2", "ctc", seed=0, vocab_size=sizes["eng"], **MMS)
    base.save_pretrained(directory)
    for seed, lang in enumerate(LETTERS):
        donor = reference_model("wav2vec2", "ctc", seed=seed, vocab_size=sizes[lang], **MMS)
        tensors = {k: v.detach().contiguous() for k, v in donor._get_adapters().items()}
        save_file(tensors, directory / f"adapter.{lang}.safetensors")
    # the reference tokenizer is built from a vocabulary file, then saves its own copy
    vocab_file = directory.parent / f"{directory.name}-vocab.json"
    vocab_file.write_text(json.dumps({lang: vocab_for(ls) for lang, ls in LETTERS.items()}))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(vocab_file), target_lang="eng")
    extractor = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True)
    transformers.Wav2Vec2Processor(
        feature_extractor=extractor, tokenizer=tokenizer
    ).save_pretrained(directory)
    vocab_file.unlink()
    return directory


@pytest.fixture
def mms_dir(tmp_path):
    """A complete MMS-style ASR checkpoint (:func:`build_mms_checkpoint`)."""
    return build_mms_checkpoint(tmp_path / "mms-tiny-all")


def speech(seconds: float, seed: int) -> np.ndarray:
    """Noise standing in for speech (the tiny models are random anyway)."""
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(16_000 * seconds))).astype(np.float32)


def build_lid_checkpoint(
    directory: Path, favour: str, labels: tuple[str, ...] = ("eng", "fra", "deu")
) -> Path:
    """A tiny language-ID checkpoint whose head always picks ``favour`` (deterministic routing)."""
    transformers = oracle()
    config = transformers.Wav2Vec2Config(**TINY)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: index for index, label in enumerate(labels)}
    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([4.0 if x == favour else 0.0 for x in labels]))
    model.save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(directory)
    return directory


def espeak(text: str, voice: str = "en", seconds: float | None = None) -> np.ndarray:
    """Real synthetic speech from espeak-ng at 16 kHz (skips the test when it is missing);
    ``seconds`` repeats it (with 0.4 s pauses) to at least that length."""
    import shutil
    import subprocess

    import soundfile as sf
    import soxr

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/test.sh installs it)")
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True
    ).stdout
    import io

    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    audio = soxr.resample(audio, rate, 16_000).astype(np.float32)
    if seconds is None:
        return audio
    pause = np.zeros(int(0.4 * 16_000), dtype=np.float32)
    repeats = int(np.ceil(seconds * 16_000 / (len(audio) + len(pause))))
    return np.concatenate([np.concatenate([audio, pause])] * repeats)


def build_server_models(root: Path) -> Path:
    """A models directory for the server tests and benchmark: ASR with eng/fra/deu adapters
    (``mms-tiny-all``), language ID favouring French (``mms-lid-tiny``), TTS ``mms-tts-eng`` and
    ``mms-tts-fra``."""
    from test_vits_pipeline import tts_checkpoint

    build_mms_checkpoint(root / "mms-tiny-all")
    build_lid_checkpoint(root / "mms-lid-tiny", favour="fra")
    tts_checkpoint(root / "mms-tts-eng", "eng", False, seed=0)
    tts_checkpoint(root / "mms-tts-fra", "fra", False, seed=1)
    return root


@pytest.fixture(scope="session")
def server_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models directory of :func:`build_server_models`, built once per session."""
    return build_server_models(tmp_path_factory.mktemp("server-models"))


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one thread: tiny models are many times slower with 2 threads on a
    busy 2-core machine (thread start-up and spinning dwarf their work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
