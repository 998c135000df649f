"""Training: adapter fine-tuning that loads in the reference, exact resume, LID and seq2seq steps.

Tiny models (conftest's TINY config) on a handful of synthetic utterances: each test runs in
seconds and checks real behaviour (loss goes down, files load in transformers with the same
logits, interrupted + resumed weights equal uninterrupted ones bit for bit).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MMS, TINY, max_diff

from mmspeech.models.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
)
from mmspeech.models.text_decoders import BartConfig
from mmspeech.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Model
from mmspeech.training import (
    Augmentation,
    CTCTask,
    Seq2SeqTask,
    Trainer,
    TrainOptions,
    Utterance,
    build_lid_model,
    build_vocab,
    init_weights,
    train_adapter,
    train_lid,
)
from mmspeech.training.batching import bucketed_batches

pytest.importorskip("jiwer")

TEXTS = ["ab ba", "abc", "cab a", "bca cb", "aa bc", "cc ab"]


def tone_utterances(texts: list[str], seconds: float = 0.12, seed: int = 0) -> list[Utterance]:
    """One utterance per text: a sum of tones (one per character) plus a little noise."""
    rng = np.random.default_rng(seed)
    utterances = []
    for index, text in enumerate(texts):
        t = np.arange(int(16000 * seconds)) / 16000
        wave = sum(np.sin(2 * np.pi * (200 + 150 * (ord(ch) % 7)) * t) for ch in text)
        wave = (wave + 0.1 * rng.standard_normal(len(t))).astype(np.float32)
        utterances.append(Utterance(f"utt{index}.wav", text, None, wave))
    return utterances


def fast(**changes: object) -> TrainOptions:
    settings: dict[str, object] = {
        "max_steps": 20, "learning_rate": 5e-3, "warmup_steps": 2, "batch_seconds": 0.4,
        "max_batch_size": 3, "log_every": 100,
    }  # fmt: skip
    settings.update(changes)
    return TrainOptions(**settings)  # type: ignore[arg-type]


def tiny_ctc(
    vocab_size: int, dropout: float = 0.0, seed: int = 0, mask_time_prob: float = 0.0
) -> Wav2Vec2ForCTC:
    config = Wav2Vec2Config(
        **{**TINY, **MMS, "vocab_size": vocab_size},
        hidden_dropout=dropout, attention_dropout=dropout, activation_dropout=dropout,
        final_dropout=dropout, layerdrop=0.0, mask_time_prob=mask_time_prob,
        mask_time_length=2, mask_time_min_masks=1, ctc_loss_reduction="mean",
    )  # fmt: skip
    model = Wav2Vec2ForCTC(config)
    init_weights(model, seed=seed)
    return model


# -- adapter fine-tuning -----------------------------------------------------------------------


def test_adapter_finetune_lowers_loss_and_loads_in_mmspeech_and_reference(mms_dir, oracle):
    data = tone_utterances(TEXTS)
    history: list = []
    result = train_adapter(mms_dir, "xyz", data, data[:2], fast(max_steps=20),
                           callback=history.append)  # fmt: skip
    assert result.steps == 20 and set(result.metrics) == {"cer", "wer"}
    first = np.mean([p.loss for p in history[:3]])
    last = np.mean([p.loss for p in history[-3:]])
    assert last < 0.6 * first, (first, last)

    vocab = json.loads((mms_dir / "vocab.json").read_text())
    assert sorted(vocab) == ["deu", "eng", "fra", "xyz"]  # the old languages are kept
    assert vocab["xyz"] == {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4,
                            "a": 5, "b": 6, "c": 7}  # fmt: skip
    assert (mms_dir / "adapter.xyz.safetensors").is_file()

    inputs = torch.from_numpy(data[0].waveform)[None]
    ours = Wav2Vec2ForCTC.from_pretrained(mms_dir)
    ours.load_adapter("xyz")
    theirs = oracle.Wav2Vec2ForCTC.from_pretrained(mms_dir)
    theirs.load_adapter("xyz")
    theirs.eval()
    with torch.no_grad():
        logits = ours(inputs).logits
        reference = theirs(inputs).logits
    assert logits.shape[-1] == 8
    assert max_diff(logits, reference) < 1e-4
    # switching back to an old language still works (its adapter file is untouched)
    ours.load_adapter("fra")
    assert ours.lm_head.out_features == 16


def test_adapter_model_trains_only_adapters_and_the_new_head(mms_dir):
    from mmspeech.training import prepare_adapter_model

    vocab = build_vocab(["xy z"])
    model = prepare_adapter_model(mms_dir, vocab)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name in model.state_dict()
                         if ".adapter_layer." in name or name.startswith("lm_head.")}  # fmt: skip
    assert model.lm_head.out_features == len(vocab) == model.config.vocab_size == 8
    # a warm start copies the rows of the tokens two vocabularies share
    source = {"<pad>": 0, "x": 1, "q": 2}
    weight, bias = torch.randn(3, 32), torch.tensor([10.0, 11.0, 12.0])
    warm = prepare_adapter_model(mms_dir, vocab, head_init=(weight, bias, source))
    assert torch.equal(warm.lm_head.weight[vocab["x"]], weight[1])
    assert torch.equal(warm.lm_head.weight[vocab["<pad>"]], weight[0])
    assert warm.lm_head.bias[vocab["x"]].item() == 11.0


def test_adapter_needs_an_adapter_checkpoint(make_checkpoint):
    _, directory = make_checkpoint("w2v2-base")
    from mmspeech.errors import ConfigError

    with pytest.raises(ConfigError, match="no language adapters"):
        train_adapter(directory, "xyz", tone_utterances(TEXTS[:2]), (), fast(max_steps=1))


# -- the loop ----------------------------------------------------------------------------------


def test_interrupt_and_resume_equals_an_uninterrupted_run(tmp_path):
    data = tone_utterances(TEXTS)
    vocab = build_vocab(TEXTS)
    # augmentation, SpecAugment and dropout all draw random numbers: resume must redraw them
    options = fast(max_steps=6, checkpoint_every=2, grad_accumulation=2, augment=Augmentation())

    def run(work: Path, stop_at: int | None) -> Wav2Vec2ForCTC:
        model = tiny_ctc(len(vocab), dropout=0.1, mask_time_prob=0.3)
        trainer = Trainer(model, CTCTask(vocab), data, (), options, work)
        trainer.train(resume=True, callback=lambda p: p.step == stop_at)
        return model

    whole = run(tmp_path / "whole", None)
    run(tmp_path / "parts", 3)
    torch.rand(1000)  # whatever happens in between must not matter
    resumed = run(tmp_path / "parts", None)
    state = resumed.state_dict()
    for key, tensor in whole.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    partial = run(tmp_path / "other", 3)
    assert not torch.equal(partial.lm_head.weight, whole.lm_head.weight)


def test_resume_refuses_other_options(tmp_path):
    data = tone_utterances(TEXTS)
    vocab = build_vocab(TEXTS)
    Trainer(tiny_ctc(len(vocab)), CTCTask(vocab), data, (), fast(max_steps=2), tmp_path).train()
    trainer = Trainer(tiny_ctc(len(vocab)), CTCTask(vocab), data, (), fast(max_steps=3), tmp_path)
    from mmspeech.errors import CheckpointError

    with pytest.raises(CheckpointError, match="max_steps=2"):
        trainer.train(resume=True)


def test_same_seed_same_weights_and_bf16_runs():
    data = tone_utterances(TEXTS)
    vocab = build_vocab(TEXTS)
    weights = []
    for _ in range(2):
        model = tiny_ctc(len(vocab), dropout=0.1)
        Trainer(model, CTCTask(vocab), data, (), fast(max_steps=3)).train()
        weights.append(model.lm_head.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
    for bf16 in (True, False):
        model = tiny_ctc(len(vocab))
        head_dtypes: list[torch.dtype] = []  # what the head computes in: autocast ran or not
        model.lm_head.register_forward_hook(
            lambda m, i, out, seen=head_dtypes: seen.append(out.dtype)
        )
        history = Trainer(model, CTCTask(vocab), data, (), fast(max_steps=2, bf16=bf16)).train()
        assert all(np.isfinite(p.loss) for p in history)
        assert model.lm_head.weight.dtype == torch.float32  # the weights stay float32
        expected = torch.bfloat16 if bf16 else torch.float32
        assert len(head_dtypes) >= 2 and set(head_dtypes) == {expected}, bf16


def test_training_flushes_denormal_floats_unless_told_not_to():
    data, vocab = tone_utterances(TEXTS[:2]), build_vocab(TEXTS[:2])
    try:
        torch.set_flush_denormal(False)
        tiny = torch.tensor([1e-39])  # a denormal float32 (made while they are kept)
        Trainer(
            tiny_ctc(len(vocab)), CTCTask(vocab), data, (), fast(max_steps=1, flush_denormal=False)
        ).train()
        assert float(tiny * 1.0) > 0
        Trainer(tiny_ctc(len(vocab)), CTCTask(vocab), data, (), fast(max_steps=1)).train()
        assert float(tiny * 1.0) == 0.0
    finally:
        torch.set_flush_denormal(False)


def test_bucketed_batches_cover_everything_once_within_budget():
    lengths = [100, 900, 250, 400, 800, 120, 330, 610]
    batches = bucketed_batches(lengths, max_samples=1200, max_batch_size=3, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert max(lengths[i] for i in batch) * len(batch) <= 1200 or len(batch) == 1
    again = bucketed_batches(lengths, max_samples=1200, max_batch_size=3, seed=1, epoch=0)
    assert again == batches
    assert any(
        bucketed_batches(lengths, max_samples=1200, max_batch_size=3, seed=1, epoch=e) != batches
        for e in range(1, 5)
    )


def test_ctc_evaluation_reports_cer_and_wer():
    from mmspeech.training.tasks import error_rates, greedy_ctc

    vocab = build_vocab(["ab c"])
    id_to_token = {i: t for t, i in vocab.items()}
    # frames: a a <pad> b | c c  -> "ab c"
    ids = [vocab["a"], vocab["a"], 0, vocab["b"], vocab["|"], vocab["c"], vocab["c"]]
    logits = torch.nn.functional.one_hot(torch.tensor([ids]), len(vocab)).float()
    assert greedy_ctc(logits, torch.tensor([7]), id_to_token) == ["ab c"]
    assert error_rates(["ab c"], ["ab d"]) == {"cer": 0.25, "wer": 0.5}


# -- language ID and encoder-decoder -----------------------------------------------------------


def test_lid_training_lowers_the_loss_and_saves_id2label(tmp_path, make_checkpoint, oracle):
    _, encoder_dir = make_checkpoint("mms")
    low = tone_utterances(["a", "a", "a", "a"], seed=1)
    high = tone_utterances(["d", "d", "d", "d"], seed=2)
    data = [Utterance(u.audio, "", "eng", u.waveform) for u in low] + [
        Utterance(u.audio, "", "fra", u.waveform) for u in high
    ]
    model = build_lid_model(encoder_dir, ["eng", "fra"], seed=0)
    # the checkpoint's SpecAugment (two 10-frame masks) would hide most of a 0.12 s tone
    model.base.config.apply_spec_augment = False
    before = {k: v.clone() for k, v in model.base.state_dict().items()}
    history: list = []
    result = train_lid(
        model, data, data, tmp_path / "lid", fast(max_steps=20, learning_rate=5e-2),
        callback=history.append,
    )  # fmt: skip
    assert np.mean([p.loss for p in history[-3:]]) < 0.5 * np.mean([p.loss for p in history[:3]])
    assert result.metrics["accuracy"] == 1.0
    for key, tensor in model.base.state_dict().items():  # the encoder stayed frozen
        assert torch.equal(tensor, before[key]), key
    reference = oracle.Wav2Vec2ForSequenceClassification.from_pretrained(tmp_path / "lid")
    assert reference.config.id2label == {0: "eng", 1: "fra"}
    inputs = torch.from_numpy(data[0].waveform)[None]
    model.eval()
    with torch.no_grad():
        assert max_diff(model(inputs).logits, reference.eval()(inputs).logits) < 1e-4


def test_lid_needs_known_labels(make_checkpoint):
    _, encoder_dir = make_checkpoint("mms")
    from mmspeech.errors import DatasetError

    with pytest.raises(DatasetError, match="two distinct labels"):
        build_lid_model(encoder_dir, ["eng"])
    model = build_lid_model(Wav2Vec2Model.from_pretrained(encoder_dir), ["eng", "fra"])
    unlabelled = tone_utterances(["a", "b"])
    with pytest.raises(DatasetError, match="not one of"):
        Trainer(model, __import__("mmspeech.training", fromlist=["x"]).ClassificationTask(
            model.config.label2id), unlabelled, (), fast(max_steps=1)).train()  # fmt: skip


def test_encoder_decoder_training_lowers_the_loss():
    encoder = {k: v for k, v in TINY.items() if k != "classifier_proj_size"}
    decoder = BartConfig(vocab_size=16, decoder_layers=1, decoder_ffn_dim=30,
                         decoder_attention_heads=4, max_position_embeddings=64, d_model=24,
                         encoder_layers=1)  # fmt: skip
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        Wav2Vec2Config(**encoder), decoder, decoder_start_token_id=0, pad_token_id=1,
        eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = SpeechEncoderDecoderModel(config)
    chars = "abc "

    def tokenize(text: str) -> list[int]:
        return [3 + chars.index(ch) for ch in text] + [2]

    def decode(ids: list[int]) -> str:
        return "".join(chars[i - 3] for i in ids if 3 <= i < 3 + len(chars))

    data = tone_utterances(TEXTS)
    task = Seq2SeqTask(tokenize, decode, max_new_tokens=8)
    trainer = Trainer(model, task, data, data[:2], fast(max_steps=15, learning_rate=1e-2))
    history = trainer.train()
    assert np.mean([p.loss for p in history[-3:]]) < 0.5 * np.mean([p.loss for p in history[:3]])
    assert set(history[-1].metrics or {}) == {"cer", "wer"}


# -- the command line --------------------------------------------------------------------------


def test_cli_train_adapter_end_to_end(mms_dir, tmp_path, capsys):
    import soundfile

    from mmspeech.training.cli import main

    rows = ["path\ttranscript"]
    for index, utterance in enumerate(tone_utterances(TEXTS)):
        soundfile.write(tmp_path / f"{index}.wav", utterance.waveform, 16000)
        rows.append(f"{index}.wav\t{utterance.text}")
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    code = main(["train-adapter", str(mms_dir), "--lang", "abc", "--train",
                 str(tmp_path / "train.tsv"), "--eval-fraction", "0.3", "--steps", "3",
                 "--batch-seconds", "1", "--work-dir", str(tmp_path / "run"),
                 "--augment"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 3 and set(report["metrics"]) == {"cer", "wer"}
    state = torch.load(tmp_path / "run" / "trainer_state.pt", weights_only=True)
    assert state["options"]["augment"]["speeds"] == (0.9, 1.0, 1.1)
    assert "abc" in json.loads((mms_dir / "vocab.json").read_text())
    # a bad manifest is a one-line error and exit code 2, not a traceback
    code = main(["train-adapter", str(mms_dir), "--lang", "abc", "--train",
                 str(tmp_path / "missing.tsv")])  # fmt: skip
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train-adapter", "train-ctc", "train-lid", "train-seq2seq"])
def test_cli_help_has_examples(command, capsys):
    from mmspeech.training.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"mmspeech {command}" in out


def test_flat_vocabulary_checkpoint_is_refused_for_adapters(mms_dir):
    from mmspeech.errors import DatasetError
    from mmspeech.training.vocab import write_language_vocab

    flat = mms_dir.parent / "flat"
    shutil.copytree(mms_dir, flat)
    (flat / "vocab.json").write_text(json.dumps({"<pad>": 0, "a": 1}))
    with pytest.raises(DatasetError, match="flat vocabulary"):
        write_language_vocab(flat, "xyz", {"<pad>": 0})


# -- augmentation and SpecAugment --------------------------------------------------------------


def test_augmentation_is_seeded_and_changes_speed_and_noise():
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    faster = Augmentation(speeds=(1.1,), gain_db=(0.0, 0.0), noise_snr_db=None)
    out = faster(wave, np.random.default_rng(0))
    assert out.dtype == np.float32 and abs(len(out) - 16000 / 1.1) <= 2
    spectrum = np.abs(np.fft.rfft(out, n=16000))  # the tone moves up by the speed factor
    assert abs(int(spectrum.argmax()) - 242) <= 1
    noisy = Augmentation(speeds=(1.0,), gain_db=(0.0, 0.0), noise_snr_db=(20.0, 20.0),
                         noise_probability=1.0)  # fmt: skip
    out = noisy(wave, np.random.default_rng(0))
    noise = out - wave
    snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(noise**2))
    assert len(out) == len(wave) and abs(snr - 20.0) < 0.5
    recipe = Augmentation()
    first, again = recipe(wave, np.random.default_rng(5)), recipe(wave, np.random.default_rng(5))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, recipe(wave, np.random.default_rng(6)))
    assert np.abs(recipe(wave * 3, np.random.default_rng(1))).max() <= 1.0  # clipped


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"speeds": ()}, "speeds"),
        ({"speeds": (3.0,)}, "speeds"),
        ({"gain_db": (6.0, -6.0)}, "gain_db"),
        ({"noise_probability": 2.0}, "noise_probability"),
    ],
)
def test_augmentation_refuses_bad_settings(changes, message):
    from mmspeech.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        Augmentation(**changes)  # type: ignore[arg-type]


def test_span_mask_stays_inside_each_rows_length():
    from mmspeech.models.wav2vec2.model import span_mask

    torch.manual_seed(0)
    mask = span_mask([100, 40, 3], 100, prob=0.2, span=5, min_spans=1)
    assert mask.shape == (3, 100)
    assert not mask[1, 40:].any() and not mask[2].any()  # padding and too-short rows: never
    assert 10 <= int(mask[0].sum()) <= 25 and 5 <= int(mask[1].sum()) <= 10
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, mask[0].int().numpy(), 0])))[::2]
    assert all(run % 5 == 0 for run in runs)  # whole spans (spans may touch)


def test_spec_augment_masks_frames_in_training_only():
    from mmspeech.models.wav2vec2.model import Wav2Vec2Model

    config = Wav2Vec2Config(
        **{**TINY, **MMS}, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        layerdrop=0.0, mask_time_prob=0.5, mask_time_length=2, mask_time_min_masks=1,
    )  # fmt: skip
    model = Wav2Vec2Model(config)
    seen: list[torch.Tensor] = []
    model.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    values = torch.randn(2, 4000)
    attention = torch.ones(2, 4000, dtype=torch.long)
    attention[1, 2000:] = 0
    model.eval()
    model(values, attention)
    model.train()
    torch.manual_seed(0)
    model(values, attention)
    clean, masked = seen
    replaced = (masked == model.masked_spec_embed).all(-1)
    assert replaced.any() and torch.equal(~replaced, (masked == clean).all(-1))
    valid = model.frame_lengths(attention.sum(-1))
    assert not replaced[1, int(valid[1]) :].any()


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    from mmspeech.training import loop, native_bf16

    for flags, expected in [
        ({"avx2", "avx512f"}, False),
        ({"avx512f", "avx512_bf16"}, True),
        ({"amx_bf16", "amx_tile"}, True),
        (set(), False),  # no /proc/cpuinfo (not Linux)
    ]:
        monkeypatch.setattr(loop, "_cpu_flags", lambda flags=flags: flags)
        assert native_bf16("cpu") is expected, flags
    assert native_bf16("meta") is False
    # CUDA: Ampere (8.0) and later compute bfloat16; a T4 (7.5) only emulates it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen = []
    for capability, expected in [((7, 5), False), ((8, 6), True)]:
        monkeypatch.setattr(
            torch.cuda, "get_device_capability",
            lambda device=None, capability=capability: seen.append(device) or capability,
        )  # fmt: skip
        assert native_bf16("cuda:1") is expected, capability
    assert seen == [torch.device("cuda:1")] * 2


def test_cli_bf16_flags(monkeypatch, caplog, tmp_path):
    import argparse

    from mmspeech.training import cli, loop

    def parse(*flags: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        parser.add_argument("checkpoint")
        cli._add_common(parser, "adapter")
        return parser.parse_args(["--train", "t.tsv", *flags])

    # a flag, so it never swallows the checkpoint that follows it
    assert parse("--bf16", "./ckpt").checkpoint == "./ckpt"
    with pytest.raises(SystemExit):
        parse("--bf16", "--bf16-auto", "./ckpt")
    monkeypatch.setattr(loop, "_cpu_flags", lambda: {"avx2"})
    assert cli._bf16(parse("./ckpt")) is False
    assert cli._bf16(parse("--bf16-auto", "./ckpt")) is False
    with caplog.at_level("WARNING", logger="mmspeech.training.cli"):
        assert cli._bf16(parse("--bf16", "./ckpt")) is True
    assert "no native bfloat16" in caplog.text
    monkeypatch.setattr(loop, "_cpu_flags", lambda: {"avx512_bf16"})
    assert cli._bf16(parse("--bf16-auto", "./ckpt")) is True


# -- files on disk: atomic, with permissions, verified ----------------------------------------


def test_train_adapter_replaces_checkpoint_files_atomically_with_their_permissions(tmp_path):
    from mmspeech.demo import demo_checkpoint
    from mmspeech.training.vocab import write_language_vocab

    directory = tmp_path / "ckpt"
    shutil.copytree(demo_checkpoint("asr"), directory)
    for path in directory.iterdir():
        path.chmod(0o644)
    vocab_path = directory / "vocab.json"
    before = json.loads(vocab_path.read_text())
    with open(vocab_path, encoding="utf-8") as reader:  # opened before the update
        train_adapter(directory, "xyz", tone_utterances(TEXTS), options=fast(max_steps=1))
        # replaced, not rewritten in place: a reader (or a kill) never sees half a file
        assert json.loads(reader.read()) == before
    after = json.loads(vocab_path.read_text())
    assert set(after) == {*before, "xyz"} and all(after[k] == before[k] for k in before)
    modes = {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}
    assert modes["adapter.xyz.safetensors"] == modes["vocab.json"] == 0o644, modes
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".")]
    vocab_path.chmod(0o640)
    write_language_vocab(directory, "xyz", after["xyz"])
    assert vocab_path.stat().st_mode & 0o777 == 0o640  # kept


def test_a_damaged_training_state_is_detected_and_the_previous_one_used(tmp_path, caplog):
    from mmspeech.errors import CheckpointError
    from mmspeech.training.state import resume_state, state_problem

    data, vocab = tone_utterances(TEXTS), build_vocab(TEXTS)
    options = fast(max_steps=4, checkpoint_every=1)

    def run(work: Path | None, stop_at: int | None = None) -> Wav2Vec2ForCTC:
        model = tiny_ctc(len(vocab))
        trainer = Trainer(model, CTCTask(vocab), data, (), options, work)
        trainer.train(resume=True, callback=lambda p: p.step == stop_at)
        return model

    whole = run(None)
    run(tmp_path, stop_at=3)
    state = tmp_path / "trainer_state.pt"
    previous = tmp_path / "trainer_state.previous.pt"
    assert state.is_file() and previous.is_file()
    damaged = bytearray(state.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # one flipped bit in the weights
    state.write_bytes(bytes(damaged))
    with caplog.at_level("WARNING", logger="mmspeech.training.state"):
        assert resume_state(tmp_path) == previous
    assert "SHA-256 differs" in caplog.text
    resumed = run(tmp_path)  # from step 2, exactly: the same weights as never stopping
    assert torch.equal(resumed.lm_head.weight, whole.lm_head.weight)
    assert state_problem(state) is None and state_problem(previous) is None  # damage not kept
    state.write_bytes(b"")
    previous.unlink()
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\)"):
        resume_state(tmp_path)
