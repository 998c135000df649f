"""Model references: local directories, and hub ids resolved through huggingface_hub's cache.

The tests have no hub access, so each one builds a cache on disk in huggingface_hub's own layout
(:func:`fake_cache`) and runs offline, or against a local port where nothing answers.
Environment variables that huggingface_hub reads at import (HF_HOME, HF_HUB_CACHE, HF_ENDPOINT,
HF_HUB_OFFLINE) are tested in a fresh Python process (:func:`run_resolve`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.file_download
import pytest
import torch
from conftest import max_diff, reference_model, waveforms
from huggingface_hub import constants as hub_constants
from safetensors.torch import load_file, save_file

from mmspeech.checkpoints import resolve
from mmspeech.errors import CheckpointNotFoundError
from mmspeech.models.wav2vec2 import Wav2Vec2ForCTC

REPO = "facebook/mms-tiny"
MAIN = hashlib.sha1(b"main").hexdigest()  # commit hashes: 40 hex digits
V2 = hashlib.sha1(b"v2").hexdigest()
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
WEIGHT_NAMES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
MMS = {
    "do_stable_layer_norm": True,
    "feat_extract_norm": "layer",
    "conv_bias": True,
    "adapter_attn_dim": 8,
}


def fake_cache(
    cache: Path,
    repo_id: str,
    files: dict[str, bytes | Path],
    *,
    commit: str = MAIN,
    refs: tuple[str, ...] = ("main",),
    absent: tuple[str, ...] = (),
) -> Path:
    """Store ``files`` as snapshot ``commit`` of ``repo_id``, laid out as huggingface_hub does::

        <cache>/models--<owner>--<name>/blobs/<etag>                     the contents
                                       /snapshots/<commit>/<filename>   symlink ../../blobs/<etag>
                                       /refs/<branch>                   the commit hash
                                       /.no_exist/<commit>/<filename>   "the hub has no such file"

    Returns the snapshot directory.
    """
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        pointer = snapshot / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    for ref in refs:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    for name in absent:
        marker = repo / ".no_exist" / commit / name
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return snapshot


def same_file(found: str | Path | None, expected: Path) -> bool:
    """``found`` is ``expected``'s snapshot entry (huggingface_hub may resolve the cache path)."""
    return (
        found is not None
        and Path(found).parent.resolve() == expected.parent.resolve()
        and (Path(found).name == expected.name)
    )


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In-process tests run offline, with an empty default cache, and fail on any hub request.

    HF_HUB_OFFLINE is set both ways: in the environment (mmspeech reads it at call time) and in
    ``huggingface_hub.constants`` (huggingface_hub read it at import).
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "default-cache"))

    def no_network(*args: Any, **kwargs: Any) -> None:
        pytest.fail(f"a hub request was made while offline: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", no_network)
    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", no_network)


# -- hub ids from the cache --------------------------------------------------------------------


def test_cache_dir_resolves_a_hub_id_offline(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    snapshot = fake_cache(
        cache, REPO, {"config.json": b'{"model_type": "wav2vec2"}', "model.safetensors": b"w"}
    )
    files = resolve(REPO, cache_dir=cache)
    assert not files.is_local
    assert same_file(files.path("config.json"), snapshot / "config.json")
    assert files.read_json("config.json") == {"model_type": "wav2vec2"}
    assert [p.name for p in files.weight_files()] == ["model.safetensors"]
    assert same_file(files.weight_files()[0], snapshot / "model.safetensors")
    assert files.path("vocab.json") is None  # absent optional file: None, no error


def test_default_cache_is_huggingface_hubs(tmp_path: Path) -> None:
    # the autouse fixture points huggingface_hub.constants.HF_HUB_CACHE at tmp_path/default-cache
    snapshot = fake_cache(tmp_path / "default-cache", REPO, {"config.json": b"{}"})
    assert same_file(resolve(REPO).path("config.json"), snapshot / "config.json")
    # an explicit cache_dir wins over the default
    assert resolve(REPO, cache_dir=tmp_path / "elsewhere").path("config.json") is None


def test_cache_without_symlinks(tmp_path: Path) -> None:
    """Where symlinks are unavailable (Windows), snapshots hold the files themselves."""
    snapshot = tmp_path / "cache" / "models--facebook--mms-tiny" / "snapshots" / MAIN
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(MAIN)
    assert resolve(REPO, cache_dir=tmp_path / "cache").path("config.json") == (
        snapshot / "config.json"
    )


def test_revision_selects_a_branch_or_a_commit(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fake_cache(cache, REPO, {"config.json": b'{"v": "main"}'}, commit=MAIN, refs=("main",))
    fake_cache(cache, REPO, {"config.json": b'{"v": "v2"}'}, commit=V2, refs=("v2",))
    cases = {None: "main", "main": "main", "v2": "v2", MAIN: "main", V2: "v2"}
    for revision, expected in cases.items():
        files = resolve(REPO, cache_dir=cache, revision=revision)
        assert files.read_json("config.json") == {"v": expected}, revision

    for revision in ("v3", "0" * 40):  # a branch and a commit that are not cached
        with pytest.raises(CheckpointNotFoundError) as caught:
            resolve(REPO, cache_dir=cache, revision=revision).require("config.json")
        assert f"revision '{revision}'" in str(caught.value)
        assert "config.json" in str(caught.value)


def test_local_files_only_alone_makes_no_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """local_files_only=True is offline even when HF_HUB_OFFLINE is not set."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    snapshot = fake_cache(tmp_path / "cache", REPO, {"config.json": b"{}"})
    files = resolve(REPO, cache_dir=tmp_path / "cache", local_files_only=True)
    assert same_file(files.path("config.json"), snapshot / "config.json")
    with pytest.raises(CheckpointNotFoundError, match="local_files_only"):
        files.weight_files()


# -- which weight layout: probing in order must skip what is not cached -------------------------


def test_weight_probe_skips_layouts_that_are_not_cached(tmp_path: Path) -> None:
    # model.safetensors was never downloaded (no file, no marker): it must not hide the .bin
    snapshot = fake_cache(tmp_path / "c", REPO, {"config.json": b"{}", "pytorch_model.bin": b"x"})
    assert [p.name for p in resolve(REPO, cache_dir=tmp_path / "c").weight_files()] == [
        "pytorch_model.bin"
    ]
    assert same_file(
        resolve(REPO, cache_dir=tmp_path / "c").weight_files()[0], snapshot / "pytorch_model.bin"
    )


def test_weight_probe_honours_no_exist_markers(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    fake_cache(cache, REPO, {"config.json": b"{}"}, absent=("model.safetensors",))
    with pytest.raises(CheckpointNotFoundError) as caught:
        resolve(REPO, cache_dir=cache).weight_files()
    message = str(caught.value)
    # the cache knows model.safetensors does not exist: only the others could help
    assert re.search(r"\bmodel\.safetensors\b(?!\.)", message) is None
    for name in WEIGHT_NAMES[1:]:
        assert name in message


def test_sharded_weights_from_the_cache(tmp_path: Path) -> None:
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors"}}
    index["weight_map"]["b"] = "model-00002-of-00002.safetensors"
    cache = tmp_path / "c"
    fake_cache(
        cache,
        REPO,
        {
            "model.safetensors.index.json": json.dumps(index).encode(),
            "model-00001-of-00002.safetensors": b"1",
        },
    )
    files = resolve(REPO, cache_dir=cache)
    with pytest.raises(CheckpointNotFoundError) as caught:
        files.weight_files()
    assert "model-00002-of-00002.safetensors" in str(caught.value)
    assert "model-00001-of-00002.safetensors" not in str(caught.value)

    fake_cache(cache, REPO, {"model-00002-of-00002.safetensors": b"2"})
    names = [p.name for p in resolve(REPO, cache_dir=cache).weight_files()]
    assert names == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


# -- a real tiny model through a hub id ---------------------------------------------------------


def adapter_tensors(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model._get_adapters().items()}


@pytest.fixture
def mms_directory(tmp_path: Path, oracle: object) -> Path:
    """A tiny MMS-style checkpoint directory: base weights + fra and deu adapters."""
    reference = reference_model("wav2vec2", "ctc", seed=0, **MMS)
    directory = tmp_path / "mms-tiny"
    reference.save_pretrained(directory)
    for seed, (lang, vocab) in enumerate([("fra", 9), ("deu", 12)], start=1):
        other = reference_model("wav2vec2", "ctc", seed=seed, vocab_size=vocab, **MMS)
        save_file(adapter_tensors(other), directory / f"adapter.{lang}.safetensors")
    return directory


@pytest.fixture
def record_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The filenames mmspeech asks huggingface_hub for (from the cache or the network)."""
    asked: list[str] = []
    for name in ("hf_hub_download", "try_to_load_from_cache"):
        original = getattr(huggingface_hub, name)

        def wrapper(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            asked.append(kwargs.get("filename", args[1] if len(args) > 1 else None))
            return _original(*args, **kwargs)

        monkeypatch.setattr(huggingface_hub, name, wrapper)
    return asked


def logits(model: Any, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logits


def test_hub_id_loads_like_the_directory_and_fetches_one_adapter(
    tmp_path: Path, mms_directory: Path, record_requests: list[str]
) -> None:
    cache = tmp_path / "cache"
    fake_cache(cache, REPO, {p.name: p for p in mms_directory.iterdir()})
    x, _ = waveforms([3200])
    from_dir = Wav2Vec2ForCTC.from_pretrained(mms_directory, target_lang="fra")
    record_requests.clear()
    from_hub = Wav2Vec2ForCTC.from_pretrained(REPO, cache_dir=cache, target_lang="fra")

    assert from_hub.target_lang == "fra" and from_hub.config.vocab_size == 9
    assert max_diff(logits(from_dir, x), logits(from_hub, x)) == 0.0
    adapters = [name for name in record_requests if name.startswith("adapter.")]
    assert adapters == ["adapter.fra.safetensors"]  # never adapter.deu
    assert {"config.json", "model.safetensors"} <= set(record_requests)
    assert not [name for name in record_requests if "pytorch_model" in name or "index" in name]

    record_requests.clear()
    from_hub.load_adapter("deu")  # switching later fetches that one file, and only it
    assert [n for n in record_requests if n.startswith("adapter.")] == ["adapter.deu.safetensors"]


def test_uncached_adapter_offline_says_so(tmp_path: Path, mms_directory: Path) -> None:
    cache = tmp_path / "cache"
    files = {p.name: p for p in mms_directory.iterdir() if p.name != "adapter.deu.safetensors"}
    fake_cache(cache, REPO, files)
    model = Wav2Vec2ForCTC.from_pretrained(REPO, cache_dir=cache, target_lang="fra")
    with pytest.raises(CheckpointNotFoundError) as error:
        model.load_adapter("deu")
    message = str(error.value)
    assert "adapter.deu.safetensors" in message and "the deu adapter" in message
    assert "not in the local cache" in message and "HF_HUB_OFFLINE" in message


def test_hub_id_loads_a_cached_bin_when_safetensors_was_never_fetched(
    tmp_path: Path, mms_directory: Path
) -> None:
    state = load_file(mms_directory / "model.safetensors")
    torch.save(state, tmp_path / "pytorch_model.bin")
    cache = tmp_path / "cache"
    fake_cache(
        cache,
        REPO,
        {
            "config.json": mms_directory / "config.json",
            "pytorch_model.bin": tmp_path / "pytorch_model.bin",
        },
    )
    x, _ = waveforms([3200])
    expected = logits(Wav2Vec2ForCTC.from_pretrained(mms_directory), x)
    assert max_diff(expected, logits(Wav2Vec2ForCTC.from_pretrained(REPO, cache_dir=cache), x)) == 0


# -- errors a user can act on -------------------------------------------------------------------


def assert_clean(error: BaseException) -> None:
    """One error, not a chain of network exceptions."""
    message = str(error)
    assert error.__cause__ is None and error.__context__ is None
    for noise in ("Traceback", "LocalEntryNotFoundError", "OfflineModeIsEnabled", "Retrying"):
        assert noise not in message


def test_offline_and_not_cached_names_the_files_and_the_fixes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fake_cache(cache, REPO, {"config.json": b"{}"})
    with pytest.raises(CheckpointNotFoundError) as caught:
        resolve(REPO, cache_dir=cache).weight_files()
    message = str(caught.value)
    assert_clean(caught.value)
    for name in WEIGHT_NAMES:
        assert name in message
    assert str(cache) in message
    assert "HF_HUB_OFFLINE" in message and "offline mode is on" in message
    assert "local checkpoint directory" in message


def test_offline_and_repository_not_cached_at_all(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError) as caught:
        Wav2Vec2ForCTC.from_pretrained("facebook/mms-1b-all", cache_dir=tmp_path / "empty")
    assert_clean(caught.value)
    assert "config.json" in str(caught.value) and "facebook/mms-1b-all" in str(caught.value)
    assert "unset HF_HUB_OFFLINE" in str(caught.value)


@pytest.mark.parametrize("ref", ["a/b/c/d", "owner/na--me", "owner/na..me", "/no/such/dir"])
def test_references_that_are_neither_directory_nor_hub_id(ref: str) -> None:
    with pytest.raises(CheckpointNotFoundError) as caught:
        resolve(ref)
    assert "No checkpoint directory at " + ref in str(caught.value)
    assert "owner/name" in str(caught.value)


def test_missing_directory_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(CheckpointNotFoundError, match="No checkpoint directory at"):
        resolve(missing)


def test_a_file_is_not_a_checkpoint(mms_directory: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="is a file"):
        resolve(mms_directory / "config.json")


def test_a_relative_name_that_is_no_directory_is_tried_as_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError) as caught:
        Wav2Vec2ForCTC.from_pretrained("my-model", cache_dir=tmp_path / "empty")
    assert "'my-model' is not a local directory, so it was looked up as a hub id" in str(
        caught.value
    )


def test_local_directory_missing_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    files = resolve(tmp_path)
    assert files.is_local and files.path("config.json") == tmp_path / "config.json"
    with pytest.raises(CheckpointNotFoundError, match="complete checkpoint directory"):
        files.weight_files()


# -- online: how hub answers are mapped (huggingface_hub faked) ---------------------------------


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline mode off, and a hub that answers the reachability check."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: None)


def hub_error(kind: str, status: int) -> Exception:
    httpx2 = pytest.importorskip("httpx2")  # huggingface_hub 2.x's HTTP client
    from huggingface_hub import errors

    url = f"https://huggingface.co/{REPO}/resolve/main/x"
    response = httpx2.Response(status, request=httpx2.Request("HEAD", url))
    return getattr(errors, kind)(f"{status} Client Error", response=response)


@pytest.mark.usefixtures("online")
def test_online_probe_moves_past_files_the_repository_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def download(repo_id: str, filename: str, **kwargs: Any) -> str:
        if filename in ("config.json", "pytorch_model.bin"):
            return str(tmp_path / filename)
        raise hub_error("RemoteEntryNotFoundError", 404)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    assert resolve(REPO).weight_files() == [tmp_path / "pytorch_model.bin"]


@pytest.mark.usefixtures("online")
def test_online_repository_without_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def download(repo_id: str, filename: str, **kwargs: Any) -> str:
        raise hub_error("RemoteEntryNotFoundError", 404)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(CheckpointNotFoundError, match=f"The hub repository '{REPO}' has no"):
        resolve(REPO).weight_files()


@pytest.mark.usefixtures("online")
@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("GatedRepoError", 403, "is gated"),
        ("RepositoryNotFoundError", 401, "neither a local directory nor a model repository"),
        ("RevisionNotFoundError", 404, "does not exist in"),
    ],
)
def test_online_hub_errors_become_checkpoint_errors(
    monkeypatch: pytest.MonkeyPatch, kind: str, status: int, expected: str
) -> None:
    def download(repo_id: str, filename: str, **kwargs: Any) -> str:
        raise hub_error(kind, status)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(CheckpointNotFoundError, match=expected):
        resolve(REPO, revision="v9").path("config.json")


@pytest.mark.usefixtures("online")
def test_hub_server_error_falls_back_to_the_cache_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub that answers 503 is down: no per-file retries, the cache alone is used."""

    def down(*args: Any, **kwargs: Any) -> None:
        raise hub_error("HfHubHTTPError", 503)

    def no_download(*args: Any, **kwargs: Any) -> None:
        pytest.fail("hf_hub_download called although the hub is down")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", down)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    snapshot = fake_cache(tmp_path / "cache", REPO, {"config.json": b"{}"})
    files = resolve(REPO, cache_dir=tmp_path / "cache")
    assert same_file(files.path("config.json"), snapshot / "config.json")
    with pytest.raises(CheckpointNotFoundError, match=r"could not be reached \(HTTP 503"):
        files.weight_files()


# -- environment variables and an unreachable hub, in a fresh process ---------------------------

SCRIPT = """
import json, sys, time
from mmspeech.checkpoints import resolve
from mmspeech.errors import CheckpointNotFoundError

started = time.perf_counter()
out = {}
files = resolve(sys.argv[1], **json.loads(sys.argv[2]))
try:
    out["config"] = str(files.require("config.json"))
    out["weights"] = [str(path) for path in files.weight_files()]
except CheckpointNotFoundError as exc:
    out["error"] = str(exc)
    out["chained"] = exc.__cause__ is not None or exc.__context__ is not None
out["seconds"] = time.perf_counter() - started
print(json.dumps(out))
"""


def run_resolve(
    ref: str, options: dict[str, Any] | None = None, **env: str
) -> tuple[dict[str, Any], str]:
    """Resolve ``ref`` (config, then weights) in a new process with exactly these HF_* vars.

    Returns what the script printed (paths, or the error) and its stderr.
    """
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "HUGGINGFACE_")) and key != "TRANSFORMERS_OFFLINE"
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, ref, json.dumps(options or {})],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.parametrize("variable", ["HF_HOME", "HF_HUB_CACHE"])
def test_cache_location_from_the_environment(tmp_path: Path, variable: str) -> None:
    home = tmp_path / "hf-home"
    cache = home / "hub" if variable == "HF_HOME" else tmp_path / "hub-cache"
    snapshot = fake_cache(cache, REPO, {"config.json": b"{}", "model.safetensors": b"w"})
    env = (
        {"HF_HOME": str(home)}
        if variable == "HF_HOME"
        else {
            "HF_HOME": str(tmp_path / "other-home"),  # HF_HUB_CACHE wins over HF_HOME
            "HF_HUB_CACHE": str(cache),
        }
    )
    out, _ = run_resolve(REPO, HF_HUB_OFFLINE="1", HF_ENDPOINT=CLOSED_PORT, **env)
    assert "error" not in out, out
    assert same_file(out["config"], snapshot / "config.json")
    assert [Path(p).name for p in out["weights"]] == ["model.safetensors"]


def test_hf_hub_offline_from_the_environment(tmp_path: Path) -> None:
    fake_cache(tmp_path / "home" / "hub", REPO, {"config.json": b"{}"})
    out, stderr = run_resolve(
        REPO, HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", HF_ENDPOINT=CLOSED_PORT
    )
    assert "offline mode is on" in out["error"] and not out["chained"]
    assert all(name in out["error"] for name in WEIGHT_NAMES)
    assert out["seconds"] < 2
    assert "hub cannot be reached" not in stderr  # offline: not even tried


def test_unreachable_hub_serves_the_cache(tmp_path: Path) -> None:
    snapshot = fake_cache(
        tmp_path / "home" / "hub", REPO, {"config.json": b"{}", "model.safetensors": b"w"}
    )
    out, stderr = run_resolve(REPO, HF_HOME=str(tmp_path / "home"), HF_ENDPOINT=CLOSED_PORT)
    assert "error" not in out, out
    assert same_file(out["weights"][0], snapshot / "model.safetensors")
    assert out["seconds"] < 5
    assert stderr.count("hub cannot be reached") == 1  # one warning, one request


def test_unreachable_hub_fails_fast_with_one_clear_error(tmp_path: Path) -> None:
    """huggingface_hub alone spends ~23 s retrying each file that is not cached (4 here)."""
    fake_cache(tmp_path / "home" / "hub", REPO, {"config.json": b"{}"})
    out, stderr = run_resolve(REPO, HF_HOME=str(tmp_path / "home"), HF_ENDPOINT=CLOSED_PORT)
    error = out["error"]
    assert out["seconds"] < 5, out
    assert not out["chained"]
    assert "the hub could not be reached" in error and "127.0.0.1:9" in error
    assert all(name in error for name in WEIGHT_NAMES)
    assert "local checkpoint directory" in error and "network connection" in error
    assert "Retrying" not in stderr


def test_silent_hub_costs_one_timeout_not_minutes(tmp_path: Path) -> None:
    """A server that accepts connections and never answers (a black-holed network): one
    HF_HUB_ETAG_TIMEOUT, where huggingface_hub alone waits 6 x 60 s + 23 s per missing file."""
    fake_cache(tmp_path / "home" / "hub", REPO, {"config.json": b"{}"})
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # the kernel completes the handshakes; nobody ever reads
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        out, _ = run_resolve(
            REPO, HF_HOME=str(tmp_path / "home"), HF_ENDPOINT=endpoint, HF_HUB_ETAG_TIMEOUT="1"
        )
    assert "could not be reached" in out["error"] and endpoint in out["error"]
    assert "needs model.safetensors" in out["error"]  # config.json came from the cache
    # 1 s for our check, plus up to 3 s huggingface_hub spends once fetching its agent registry
    assert out["seconds"] < 10, out


def test_local_files_only_makes_no_request_at_all(tmp_path: Path) -> None:
    """Not even the one huggingface_hub 2.x makes when building its headers (agent registry)."""
    snapshot = fake_cache(tmp_path / "home" / "hub", REPO, {"config.json": b"{}"})
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        out, _ = run_resolve(
            REPO, {"local_files_only": True}, HF_HOME=str(tmp_path / "home"), HF_ENDPOINT=endpoint
        )
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # no connection is waiting to be accepted
            server.accept()
    assert same_file(out["config"], snapshot / "config.json")
    assert "offline mode is on" in out["error"] and "local_files_only" in out["error"]
