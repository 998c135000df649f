"""``FlaxWav2Vec2ForCTC`` with MMS language adapters against our PyTorch ``Wav2Vec2ForCTC``:
the base (English) head, ``target_lang`` at load time and switching with ``load_adapter``
(the head resized to each language's vocabulary)."""

from __future__ import annotations

import os

os.environ.setdefault(  # tiny programs: XLA's optimisation passes cost more than they save
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

import numpy as np
import pytest
import torch
from conftest import max_diff, waveforms

pytest.importorskip("flax", reason="the Flax tests need mmspeech[jax]")

from mmspeech import Wav2Vec2ForCTC
from mmspeech.errors import ConfigError, LanguageError
from mmspeech.flax.ctc import FlaxWav2Vec2ForCTC

TOL = 1e-4


def test_mms_adapters_match_pytorch(mms_dir):
    x, mask = waveforms([4000, 2900])
    model = FlaxWav2Vec2ForCTC.from_pretrained(mms_dir, target_lang="fra")
    reference = Wav2Vec2ForCTC.from_pretrained(mms_dir, target_lang="fra")
    for lang in ("fra", "deu", "eng"):
        if lang != "fra":
            model.load_adapter(lang)
            reference.load_adapter(lang)
        with torch.no_grad():
            expected = reference(x, mask).logits
        got = model(x, mask)
        assert model.config.vocab_size == reference.config.vocab_size
        lengths = np.asarray(got.frame_mask).sum(-1)
        for row, length in enumerate(lengths):
            assert max_diff(expected[row, :length], np.asarray(got.logits)[row, :length]) < TOL
    with pytest.raises(LanguageError, match="No adapter"):
        model.load_adapter("xyz")


def test_a_checkpoint_without_adapters_refuses_target_lang(make_checkpoint):
    _, directory = make_checkpoint("w2v2-base", "ctc")
    model = FlaxWav2Vec2ForCTC.from_pretrained(directory)
    reference = Wav2Vec2ForCTC.from_pretrained(directory)
    x, _ = waveforms([3000])
    with torch.no_grad():
        assert max_diff(reference(x).logits, np.asarray(model(x).logits)) < TOL
    with pytest.raises(ConfigError, match="no language adapters"):
        FlaxWav2Vec2ForCTC.from_pretrained(directory, target_lang="fra")
