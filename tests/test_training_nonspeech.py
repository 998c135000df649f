"""Non-speech in CTC training: clips with an empty transcript (noise, silence) are an opt-in
(``allow_empty_text``) that trains the model toward all-blank output; without it an empty
transcript stays an error that says how to opt in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch
from conftest import TINY

from mmspeech.errors import DatasetError
from mmspeech.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Model
from mmspeech.training import (
    CTCTask,
    TrainOptions,
    Utterance,
    build_vocab,
    encode,
    init_weights,
    read_manifest,
)
from mmspeech.training.recipes import train_ctc
from mmspeech.training.tasks import greedy_ctc

pytest.importorskip("jiwer")

TEXTS = ["ab ba", "abc", "cab a", "bca cb", "aa bc", "cc ab"]


def tones(text: str, rng: np.random.Generator, seconds: float = 0.3) -> np.ndarray:
    """A sum of tones, one per character, plus a little noise (as tests/test_training.py)."""
    t = np.arange(int(16000 * seconds)) / 16000
    wave = sum(np.sin(2 * np.pi * (200 + 150 * (ord(ch) % 7)) * t) for ch in text)
    return (wave + 0.1 * rng.standard_normal(len(t))).astype(np.float32)


def data(seed: int = 0) -> tuple[list[Utterance], list[Utterance]]:
    """(speech-like utterances, noise clips with empty transcripts)."""
    rng = np.random.default_rng(seed)
    speech = [Utterance(f"s{i}.wav", text, None, tones(text, rng)) for i, text in enumerate(TEXTS)]
    noise = [
        Utterance(f"n{i}.wav", "", None, rng.standard_normal(4800).astype(np.float32))
        for i in range(4)
    ]
    return speech, noise


def tiny_ctc(vocab_size: int) -> Wav2Vec2ForCTC:
    config = Wav2Vec2Config(**{**TINY, "vocab_size": vocab_size}, ctc_loss_reduction="mean")
    model = Wav2Vec2ForCTC(config)
    init_weights(model, seed=0)
    return model


def greedy(model: Wav2Vec2ForCTC, vocab: dict[str, int], utterances: list[Utterance]) -> list[str]:
    model.eval()
    batch = CTCTask(vocab).collate([Utterance(u.audio, "a", None, u.waveform) for u in utterances])
    with torch.no_grad():
        logits = model(batch["input_values"], batch["attention_mask"]).logits
    lengths = model.base.frame_lengths(batch["attention_mask"].sum(-1))
    return greedy_ctc(logits, lengths, {i: t for t, i in vocab.items()})


def test_an_empty_transcript_is_an_error_unless_allowed():
    vocab = build_vocab(TEXTS)
    with pytest.raises(DatasetError, match="allow_empty_text"):
        encode("", vocab)
    with pytest.raises(DatasetError, match="allow_empty_text"):
        encode("   ", vocab)
    assert encode(" ", vocab, allow_empty=True) == []
    assert encode("ab", vocab, allow_empty=True) == [vocab["a"], vocab["b"]]


def test_a_manifest_row_with_empty_text_needs_the_opt_in(tmp_path):
    for name in ("speech.wav", "noise.wav"):
        soundfile.write(tmp_path / name, np.zeros(1600, np.float32), 16000)
    manifest = tmp_path / "train.tsv"
    manifest.write_text("audio\ttext\nspeech.wav\tab\nnoise.wav\t\n")
    with pytest.raises(DatasetError, match=r"Row 2 .* empty text.*allow_empty_text"):
        read_manifest(manifest)
    speech, noise = read_manifest(manifest, allow_empty_text=True)
    assert (speech.text, noise.text) == ("ab", "")
    (tmp_path / "no-text.tsv").write_text("audio\nnoise.wav\n")
    with pytest.raises(DatasetError, match="text column"):  # the column itself is still needed
        read_manifest(tmp_path / "no-text.tsv", allow_empty_text=True)


def test_a_batch_of_only_empty_transcripts_gives_a_finite_loss():
    vocab = build_vocab(TEXTS)
    _, noise = data()
    task = CTCTask(vocab, allow_empty=True)
    batch = task.collate(noise[:2])
    assert batch["labels"].shape == (2, 0)
    loss = task.loss(tiny_ctc(len(vocab)), batch)
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    with pytest.raises(DatasetError, match="allow_empty_text"):
        CTCTask(vocab).collate(noise[:1])


def blank_probability(model: Wav2Vec2ForCTC, utterances: list[Utterance]) -> float:
    """Mean probability of the CTC blank over every frame of ``utterances``."""
    model.eval()
    with torch.no_grad():
        values = torch.stack([torch.from_numpy(u.waveform) for u in utterances])
        logits = model(values).logits
    return float(logits.softmax(-1)[..., 0].mean())


def test_training_on_empty_transcripts_moves_noise_toward_all_blank(tmp_path):
    vocab = build_vocab(TEXTS)
    speech, noise = data()
    options = TrainOptions(
        max_steps=20, learning_rate=5e-3, warmup_steps=2, batch_seconds=1.0, max_batch_size=4,
        log_every=100,
    )  # fmt: skip
    with pytest.raises(DatasetError, match="allow_empty_text"):  # the default is unchanged
        train_ctc(tiny_ctc(len(vocab)), vocab, speech + noise, [], tmp_path / "refused", options)
    _, fresh_noise = data(seed=1)  # noise it never heard
    before = tiny_ctc(len(vocab))
    assert any(greedy(before, vocab, fresh_noise))  # untrained: letters everywhere
    model = tiny_ctc(len(vocab))
    result = train_ctc(
        model, vocab, speech + noise, [], tmp_path / "out", options, allow_empty_text=True
    )
    assert np.isfinite(result.final_loss)
    assert greedy(model, vocab, fresh_noise) == [""] * len(fresh_noise)
    assert (
        blank_probability(model, fresh_noise) > 0.8 > 0.2 > blank_probability(before, fresh_noise)
    )


def test_cli_train_ctc_takes_allow_empty_text(tmp_path, capsys):
    from mmspeech.training.cli import main

    speech, noise = data()
    rows = ["audio\ttext"]
    for index, utterance in enumerate(speech + noise):
        soundfile.write(tmp_path / f"{index}.wav", utterance.waveform, 16000)
        rows.append(f"{index}.wav\t{utterance.text}")
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    Wav2Vec2Model(Wav2Vec2Config(**TINY)).save_pretrained(tmp_path / "encoder")
    command = ["train-ctc", "--from", str(tmp_path / "encoder"), "--train",
               str(tmp_path / "train.tsv"), "--out", str(tmp_path / "asr"), "--steps", "2",
               "--batch-seconds", "1"]  # fmt: skip
    assert main(command) == 2
    assert "allow_empty_text" in capsys.readouterr().err
    assert main([*command, "--allow-empty-text"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
