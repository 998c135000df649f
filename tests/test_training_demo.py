"""The shipped demo checkpoints: MMS layout, every adapter loads in mmspeech and transformers
with the same logits, and the LID model names the six languages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import max_diff

from mmspeech import Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification, Wav2Vec2Processor
from mmspeech.demo import demo_checkpoint, demo_languages
from mmspeech.errors import CheckpointNotFoundError

LANGUAGES = ["deu", "ell", "eng", "fra", "rus", "spa"]


@pytest.fixture(scope="module")
def asr_dir():
    try:
        return demo_checkpoint("asr")
    except CheckpointNotFoundError as exc:
        pytest.skip(str(exc))


def test_asr_checkpoint_has_the_mms_layout(asr_dir):
    assert demo_languages() == LANGUAGES
    vocab = json.loads((asr_dir / "vocab.json").read_text(encoding="utf-8"))
    assert sorted(vocab) == LANGUAGES
    for table in vocab.values():
        assert [t for t, i in sorted(table.items(), key=lambda x: x[1])][:5] == [
            "<pad>", "<s>", "</s>", "<unk>", "|",
        ]  # fmt: skip
    assert "ж" in vocab["rus"] and "ς" in vocab["ell"] and "ß" not in vocab["eng"]


def test_every_adapter_matches_the_reference(asr_dir, oracle):
    waveform = torch.from_numpy(
        (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    )[None]
    ours = Wav2Vec2ForCTC.from_pretrained(asr_dir)
    theirs = oracle.Wav2Vec2ForCTC.from_pretrained(asr_dir, dtype=torch.float32).eval()
    processor = Wav2Vec2Processor.from_pretrained(asr_dir)
    for lang in LANGUAGES:
        ours.load_adapter(lang)
        theirs.load_adapter(lang)
        processor.tokenizer.set_target_lang(lang)
        with torch.no_grad():
            logits, reference = ours(waveform).logits, theirs(waveform).logits
        assert logits.shape[-1] == len(processor.tokenizer) == reference.shape[-1]
        # the float16 weight-norm pair is folded in float32, as the reference computes it
        assert max_diff(logits, reference) < 1e-4, lang
        assert torch.equal(logits.argmax(-1), reference.argmax(-1)), lang


def test_lid_checkpoint_names_the_languages():
    try:
        lid_dir = demo_checkpoint("lid")
    except CheckpointNotFoundError as exc:
        pytest.skip(str(exc))
    model = Wav2Vec2ForSequenceClassification.from_pretrained(lid_dir)
    assert sorted(model.config.id2label.values()) == LANGUAGES
    with torch.no_grad():
        logits = model(torch.zeros(1, 8000)).logits
    assert logits.shape == (1, 6) and torch.isfinite(logits).all()


def test_unknown_demo_kind_is_a_clear_error():
    with pytest.raises(CheckpointNotFoundError, match="'asr', 'lid'"):
        demo_checkpoint("tts")
