"""Flax tests that need the oracle (transformers builds their checkpoints or reads ours):
``save_pretrained`` files the reference loads, ``from_encoder_decoder_pretrained`` joining
reference-saved checkpoints as our PyTorch class joins them, and SPEC §6's snippets with the
Flax class swapped in."""

from __future__ import annotations

import os

os.environ.setdefault(  # tiny programs: XLA's optimisation passes cost more than they save
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

import numpy as np
import pytest
import torch
from conftest import max_diff, waveforms

pytest.importorskip("transformers", reason="transformers is the test oracle")
pytest.importorskip("flax", reason="the Flax tests need mmspeech[jax]")
import jax
import jax.numpy as jnp
import transformers

from mmspeech import AutoFeatureExtractor, AutoTokenizer, Wav2Vec2Processor
from mmspeech.flax import FlaxSpeechEncoderDecoderModel
from mmspeech.flax.weights import to_state
from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel
from test_flax_speech_encoder_decoder import build_pair, labels_for
from test_spec_snippets_seq2seq import (  # noqa: F401  (fixtures)
    combined_checkpoint,
    speech,
    two_checkpoints,
)
from test_speech_encoder_decoder_pretrained import decoder_checkpoint, encoder_checkpoint

pytestmark = pytest.mark.oracle
TOL = 1e-4


@pytest.mark.parametrize("variant", ["hubertbn-mbart-proj", "w2v2mms-mbart"])
def test_save_pretrained_is_read_by_the_reference(tmp_path, variant):
    reference, model = build_pair(tmp_path / variant, variant)
    model.save_pretrained(tmp_path / "saved")
    oracle = transformers.SpeechEncoderDecoderModel.from_pretrained(tmp_path / "saved").eval()
    x, mask = waveforms([4000, 2900])
    labels = labels_for(2, 5)
    with torch.no_grad():
        expected = reference(x, mask, labels=labels)
        got = oracle(input_values=x, attention_mask=mask, labels=labels)
    assert max_diff(expected.logits, got.logits) < TOL


@pytest.mark.parametrize(
    ("encoder_class", "decoder_class", "width"),
    [("Wav2Vec2ForCTC", "BertModel", 24), ("HubertModel", "GPT2LMHeadModel", 32)],
)
def test_from_encoder_decoder_pretrained_joins_as_pytorch(
    tmp_path, encoder_class, decoder_class, width
):
    encoder_dir = encoder_checkpoint(tmp_path, encoder_class)
    decoder_dir = decoder_checkpoint(tmp_path, decoder_class, width)
    ids = {"decoder_start_token_id": 0, "pad_token_id": 1}
    torch_model = SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
        encoder_dir, decoder_dir, **ids
    )
    model = FlaxSpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
        encoder_dir, decoder_dir, **ids
    )
    assert sorted(model.newly_initialized_keys) == sorted(torch_model.newly_initialized_keys)
    assert model.config.to_dict() == torch_model.config.to_dict()
    ours = to_state({"params": model.params, **({"batch_stats": model.batch_stats})})
    theirs = torch_model.state_dict()
    # no SpecAugment in Flax (so no masked_spec_embed); BatchNorm step counters are not kept
    unused = {k for k in theirs if k.endswith(("num_batches_tracked", "masked_spec_embed"))}
    assert set(ours) == set(theirs) - unused
    for key, value in ours.items():
        if key not in model.newly_initialized_keys:
            assert max_diff(theirs[key], value) == 0.0, key
    with pytest.raises(TypeError):
        FlaxSpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
            encoder_dir, decoder_dir, no_such_field=1
        )


def test_spec_snippet_two_pretrained_then_training(two_checkpoints):  # noqa: F811
    """SPEC §6 with the Flax class: join HuBERT + BERT, set the ids, a loss and its gradients."""
    encoder_id, decoder_id = two_checkpoints
    feature_extractor = AutoFeatureExtractor.from_pretrained(encoder_id)
    tokenizer = AutoTokenizer.from_pretrained(decoder_id)
    model = FlaxSpeechEncoderDecoderModel.from_encoder_decoder_pretrained(encoder_id, decoder_id)
    model.config.decoder_start_token_id = tokenizer.cls_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    assert any("crossattention" in key for key in model.newly_initialized_keys)
    input_values = feature_extractor(speech(0.5, 0), return_tensors="pt").input_values.numpy()
    labels = tokenizer("the quick brown fox", return_tensors="pt").input_ids.numpy()
    mask = np.ones(input_values.shape, np.int32)
    loss, grads = jax.jit(jax.value_and_grad(model.loss_fn))(
        model.params, input_values, mask, labels
    )
    cross = grads["decoder"]["bert"]["encoder"]["layer.0"]["crossattention"]["self"]["query"]
    assert np.isfinite(float(loss)) and float(jnp.abs(cross["kernel"]).sum()) > 0
    assert abs(float(model(input_values, labels=labels).loss) - float(loss)) < TOL


def test_spec_snippet_combined_checkpoint_generate(combined_checkpoint):  # noqa: F811
    """``from_pretrained`` + ``generate`` + ``batch_decode``: the PyTorch model's text."""
    model = FlaxSpeechEncoderDecoderModel.from_pretrained(combined_checkpoint)
    processor = Wav2Vec2Processor.from_pretrained(combined_checkpoint)
    inputs = processor(speech(0.6, 1), sampling_rate=16_000, return_tensors="pt")
    generated_ids = model.generate(inputs["input_values"], inputs["attention_mask"])
    transcription = processor.batch_decode(generated_ids, skip_special_tokens=True)
    torch_model = SpeechEncoderDecoderModel.from_pretrained(combined_checkpoint)
    expected = torch_model.generate(inputs["input_values"], inputs["attention_mask"])
    assert (generated_ids == expected.numpy()).all()
    assert transcription == processor.batch_decode(expected, skip_special_tokens=True)
    assert transcription[0]
