"""Beam sampling (``do_sample`` with ``num_beams > 1``) against the reference: the filters keep
one token more than the end tokens, and with the same RNG state the drawn ids are the
reference's."""

from __future__ import annotations

import pytest
import torch
from conftest import max_diff, waveforms

from mmspeech.generation.logits import apply_filters, build_warpers
from mmspeech.generation.options import GenerationOptions
from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel
from test_speech_encoder_decoder import reference_seq2seq

pytestmark = pytest.mark.oracle


@pytest.mark.parametrize(
    "settings",
    [{"top_k": 1}, {"top_p": 0.05}, {"temperature": 0.5, "top_k": 1, "top_p": 0.01}],
)
def test_beam_sampling_filters_keep_two_tokens_like_the_reference(settings):
    from transformers.generation import logits_process as lp

    scores = torch.randn(3, 30, generator=torch.Generator().manual_seed(1))
    tokens = torch.zeros(3, 2, dtype=torch.long)
    options = GenerationOptions().updated({"do_sample": True, "num_beams": 4, **settings})
    warpers = []
    if options.temperature != 1.0:
        warpers.append(lp.TemperatureLogitsWarper(options.temperature))
    if options.top_k:
        warpers.append(lp.TopKLogitsWarper(options.top_k, min_tokens_to_keep=2))
    if options.top_p < 1.0:
        warpers.append(lp.TopPLogitsWarper(options.top_p, min_tokens_to_keep=2))
    expected = lp.LogitsProcessorList(warpers)(tokens, scores.clone())
    got = apply_filters(build_warpers(options, min_tokens_to_keep=2), tokens, scores.clone())
    assert torch.equal(torch.isinf(expected), torch.isinf(got))
    assert (torch.isfinite(got).sum(dim=-1) == 2).all()  # aggressive settings: two survive
    finite = torch.isfinite(expected)
    assert max_diff(expected[finite], got[finite]) < 1e-6


@pytest.mark.parametrize("variant", ["w2v2-bart-proj", "hubert-gpt2"])
def test_beam_sampling_draws_the_references_ids(tmp_path, variant):
    reference = reference_seq2seq(variant)
    reference.save_pretrained(tmp_path / variant)
    model = SpeechEncoderDecoderModel.from_pretrained(tmp_path / variant)
    x, mask = waveforms([4000, 2900])
    options = {
        "do_sample": True,
        "num_beams": 3,
        "num_return_sequences": 2,
        "top_k": 8,
        "top_p": 0.95,
        "temperature": 1.4,
        "max_new_tokens": 8,
    }
    for seed in (3, 4):
        torch.manual_seed(seed)
        expected = reference.generate(x, attention_mask=mask, **options)
        torch.manual_seed(seed)
        assert torch.equal(expected, model.generate(x, mask, **options))
    first = model.generate(x, mask, seed=11, **options)
    assert torch.equal(first, model.generate(x, mask, seed=11, **options))
    assert first.shape[0] == 4  # two inputs, two sequences each
