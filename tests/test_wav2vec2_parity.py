"""Parity of the wav2vec2/HuBERT family with the reference, submodule by submodule.

Every variant (both block layouts, both feature-encoder norms, conv bias, MMS adapters, HuBERT's
optional projection LayerNorm and BatchNorm position conv) is saved by transformers and loaded
by mmspeech; outputs must agree to 1e-4 (float32).
"""

from __future__ import annotations

import pytest
import torch
from conftest import VARIANTS, max_diff, waveforms

from mmspeech.models import wav2vec2 as ours

pytestmark = pytest.mark.oracle

TOL = 1e-4
CLASSES = {
    ("wav2vec2", "bare"): ours.Wav2Vec2Model,
    ("wav2vec2", "ctc"): ours.Wav2Vec2ForCTC,
    ("wav2vec2", "cls"): ours.Wav2Vec2ForSequenceClassification,
    ("hubert", "bare"): ours.HubertModel,
    ("hubert", "ctc"): ours.HubertForCTC,
    ("hubert", "cls"): ours.HubertForSequenceClassification,
}


def load_pair(make_checkpoint, variant, head="ctc", **changes):
    reference, directory = make_checkpoint(variant, head, **changes)
    family = VARIANTS[variant][0]
    model = CLASSES[family, head].from_pretrained(directory)
    return reference, model


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_submodules_match(make_checkpoint, variant):
    """Feature encoder, projection, position conv, each block and the encoder, one at a time."""
    reference, model = load_pair(make_checkpoint, variant)
    family = VARIANTS[variant][0]
    ref_base, our_base = getattr(reference, family), model.base
    x, _ = waveforms([3200, 3200])
    with torch.no_grad():
        ref_conv = ref_base.feature_extractor(x)
        our_conv = our_base.feature_extractor(x)
        assert max_diff(ref_conv, our_conv) < TOL
        features = ref_conv.transpose(1, 2)
        ref_proj = ref_base.feature_projection(features)
        our_proj, our_normed = our_base.feature_projection(features)
        ref_hidden = ref_proj[0] if isinstance(ref_proj, tuple) else ref_proj
        assert max_diff(ref_hidden, our_proj) < TOL
        if isinstance(ref_proj, tuple):
            assert max_diff(ref_proj[1], our_normed) < TOL
        assert (
            max_diff(
                ref_base.encoder.pos_conv_embed(ref_hidden),
                our_base.encoder.pos_conv_embed(ref_hidden),
            )
            < TOL
        )
        for ref_layer, our_layer in zip(
            ref_base.encoder.layers, our_base.encoder.layers, strict=True
        ):
            assert max_diff(ref_layer(ref_hidden), our_layer(ref_hidden, None)) < TOL
        assert (
            max_diff(ref_base.encoder(ref_hidden).last_hidden_state, our_base.encoder(ref_hidden))
            < TOL
        )


@pytest.mark.parametrize("variant", ["w2v2-stable", "mms", "hubert-stable"])
def test_layer_norm_feature_encoder_in_pieces_equals_the_whole(
    make_checkpoint, variant, monkeypatch
):
    """Long clips run the LayerNorm feature encoder in pieces of CHUNK_FRAMES output frames
    (bounded memory): the frames are the reference's, across every piece boundary."""
    from mmspeech.models.wav2vec2 import feature_encoder

    reference, model = load_pair(make_checkpoint, variant)
    family = VARIANTS[variant][0]
    x, _ = waveforms([5000, 5000])
    with torch.no_grad():
        expected = getattr(reference, family).feature_extractor(x)
        monkeypatch.setattr(feature_encoder, "CHUNK_FRAMES", 7)  # several pieces, one short
        encoder = model.base.feature_extractor
        calls = []
        whole = encoder._channels_last
        monkeypatch.setattr(encoder, "_channels_last", lambda w: calls.append(w) or whole(w))
        pieces = encoder(x)
    assert len(calls) == -(-expected.shape[2] // 7) > 2 and expected.shape[2] % 7
    assert max_diff(expected, pieces) < TOL


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_ctc_logits_match_unpadded_and_padded(make_checkpoint, variant):
    """With and without an attention mask: group-norm models too behave as the reference."""
    reference, model = load_pair(make_checkpoint, variant)
    x, mask = waveforms([4000, 2900, 1200])
    for attention_mask in (None, mask):
        with torch.no_grad():
            expected = reference(x, attention_mask=attention_mask).logits
            got = model(x, attention_mask=attention_mask).logits
        assert max_diff(expected, got) < TOL
        assert torch.equal(expected.argmax(-1), got.argmax(-1))


@pytest.mark.parametrize("variant", ["w2v2-stable", "mms", "hubert-stable"])
def test_padded_batch_equals_each_item_alone(make_checkpoint, variant):
    """Layer-norm models: padding does not change an item's logits (within the valid frames)."""
    _, model = load_pair(make_checkpoint, variant)
    lengths = [4000, 2900, 1200]
    x, mask = waveforms(lengths)
    with torch.no_grad():
        batched = model(x, attention_mask=mask).logits
        for row, length in enumerate(lengths):
            alone = model(x[row : row + 1, :length]).logits[0]
            assert max_diff(batched[row, : alone.shape[0]], alone) < TOL


@pytest.mark.parametrize("variant", ["w2v2-base", "mms", "hubert-bn"])
def test_bare_encoder_and_hidden_states_match(make_checkpoint, variant):
    reference, model = load_pair(make_checkpoint, variant, head="bare")
    x, mask = waveforms([3600, 2000])
    with torch.no_grad():
        expected = reference(x, attention_mask=mask, output_hidden_states=True)
        got = model(x, attention_mask=mask)
        states = model.hidden_states(x, attention_mask=mask)
    assert max_diff(expected.last_hidden_state, got.last_hidden_state) < TOL
    if hasattr(expected, "extract_features") and expected.extract_features is not None:
        assert max_diff(expected.extract_features, got.extract_features) < TOL
    assert len(states) == len(expected.hidden_states) == 3
    for ref_state, our_state in zip(expected.hidden_states, states, strict=True):
        assert max_diff(ref_state, our_state) < TOL


@pytest.mark.parametrize("variant", ["w2v2-base", "mms", "hubert-stable"])
@pytest.mark.parametrize("weighted", [False, True])
def test_classification_logits_match(make_checkpoint, variant, weighted):
    reference, model = load_pair(
        make_checkpoint, variant, head="cls", use_weighted_layer_sum=weighted
    )
    x, mask = waveforms([4000, 2500, 1600])
    with torch.no_grad():
        for attention_mask in (None, mask):
            expected = reference(x, attention_mask=attention_mask).logits
            got = model(x, attention_mask=attention_mask).logits
            assert max_diff(expected, got) < TOL
    assert model.config.id2label == {0: "eng", 1: "fra", 2: "deu"}


def test_ctc_loss_and_gradients_match(make_checkpoint):
    no_randomness = {
        name: 0.0
        for name in (
            "hidden_dropout",
            "activation_dropout",
            "attention_dropout",
            "final_dropout",
            "layerdrop",
            "mask_time_prob",
        )
    }
    reference, model = load_pair(make_checkpoint, "mms", ctc_loss_reduction="mean", **no_randomness)
    reference.train()
    model.train()
    x, mask = waveforms([4000, 3000])
    labels = torch.tensor([[5, 6, 7, 7, 8], [9, 10, 4, 0, -100]])  # 0: blank = padding
    expected = reference(x, attention_mask=mask, labels=labels).loss
    got = model(x, attention_mask=mask, labels=labels).loss
    assert got is not None
    assert abs(expected.item() - got.item()) < TOL
    expected.backward()
    got.backward()
    ref_grad = reference.lm_head.weight.grad
    our_grad = model.lm_head.weight.grad
    assert ref_grad is not None and our_grad is not None
    # relative to the gradient's size (entries up to ~60 here): float32 sums in another order
    # differ by ~1e-3 on some CPUs (AVX2 without AVX-512), 2e-5 of the largest entry
    assert max_diff(ref_grad, our_grad) < 1e-4 * float(ref_grad.abs().max())


def test_too_short_audio_is_a_clear_error(make_checkpoint):
    _, model = load_pair(make_checkpoint, "mms")
    from mmspeech.errors import AudioError

    with pytest.raises(AudioError, match="needs at least 40 samples"):
        model(torch.zeros(1, 10))
