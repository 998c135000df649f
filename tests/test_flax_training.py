"""Flax training and checkpoints: gradients equal to our PyTorch model's, an optax train step,
``save_pretrained`` files that our PyTorch class loads. No oracle: the tests that need
transformers are in tests/test_flax_oracle.py."""

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
import jax
import jax.numpy as jnp
import optax

from mmspeech.flax import FlaxSpeechEncoderDecoderModel
from mmspeech.flax.training import make_train_step
from mmspeech.flax.weights import to_state
from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel
from test_flax_speech_encoder_decoder import build_pair, labels_for

TOL = 1e-4


@pytest.fixture(scope="module")
def bart_pair(tmp_path_factory):
    return build_pair(tmp_path_factory.mktemp("flax-train") / "w2v2-bart", "w2v2-bart-proj")


@pytest.mark.parametrize("variant", ["w2v2-bart-proj", "hubertadapter-gpt2"])
def test_gradients_match_pytorch(tmp_path, variant):
    reference, model = build_pair(tmp_path / variant, variant)
    x, mask = waveforms([4000, 2900])
    labels = labels_for(2, 5)
    loss = reference(x, mask, labels=labels).loss
    loss.backward()
    arrays = (jnp.asarray(t.numpy()) for t in (x, mask, labels))
    flax_loss, grads = jax.jit(jax.value_and_grad(model.loss_fn))(model.params, *arrays)
    assert abs(float(flax_loss) - float(loss.detach())) < TOL
    ours = to_state({"params": grads})
    theirs = {name: p.grad for name, p in reference.named_parameters() if p.grad is not None}
    assert set(theirs) == set(ours)
    largest = max(float(grad.abs().max()) for grad in theirs.values())
    for name, grad in theirs.items():
        # relative to the tensor's scale, floored at 1e-3 of the largest gradient: a key
        # projection's bias gets a zero gradient (softmax ignores it), up to rounding
        scale = max(float(grad.abs().max()), 1e-3 * largest)
        assert max_diff(grad, ours[name]) / scale < 1e-3, name


def test_optax_train_step_lowers_the_loss_and_saves_for_pytorch(bart_pair, tmp_path):
    """A few Adam steps with dropout; the trained weights save as a checkpoint our PyTorch
    class loads, with the same logits."""
    _, model = bart_pair
    x, mask = waveforms([4000, 2900])
    labels = labels_for(2, 5)
    optimizer = optax.adam(3e-3)
    step = make_train_step(model, optimizer)
    params, opt_state = model.params, optimizer.init(model.params)
    losses = []
    for index in range(15):
        params, opt_state, loss = step(
            params, opt_state, x.numpy(), mask.numpy(), labels.numpy(), jax.random.key(index)
        )
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
    trained = FlaxSpeechEncoderDecoderModel(model.config, params)
    trained.save_pretrained(tmp_path / "trained")
    reloaded = SpeechEncoderDecoderModel.from_pretrained(tmp_path / "trained")
    tokens = np.array([[0, 5, 7, 9], [0, 4, 4, 3]])
    with torch.no_grad():
        expected = reloaded(x, mask, decoder_input_ids=torch.from_numpy(tokens)).logits
    assert max_diff(expected, np.asarray(trained(x, mask, decoder_input_ids=tokens).logits)) < TOL


@pytest.mark.parametrize("variant", ["hubertbn-mbart-proj", "w2v2mms-mbart"])
def test_save_pretrained_round_trips_through_pytorch(tmp_path, variant):
    """BatchNorm statistics and the weight-normed position conv are written as PyTorch reads
    them (the reference reads them too: tests/test_flax_oracle.py)."""
    reference, model = build_pair(tmp_path / variant, variant)
    model.save_pretrained(tmp_path / "saved")
    reloaded = SpeechEncoderDecoderModel.from_pretrained(tmp_path / "saved")
    x, mask = waveforms([4000, 2900])
    labels = labels_for(2, 5)
    with torch.no_grad():
        expected = reference(x, mask, labels=labels)
        assert max_diff(expected.logits, reloaded(x, mask, labels=labels).logits) < TOL
