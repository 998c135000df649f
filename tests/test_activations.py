"""Activations by config name, and their in-place form for inference."""

from __future__ import annotations

import pytest
import torch

from mmspeech.errors import ConfigError
from mmspeech.nn.activations import activation, apply_in_place

NAMES = ["gelu", "gelu_new", "gelu_fast", "quick_gelu", "relu", "silu", "tanh", "sigmoid"]


@pytest.mark.parametrize("name", NAMES)
def test_in_place_equals_the_module_and_overwrites_only_without_autograd(name):
    module = activation(name)
    x = torch.randn(4, 33)
    expected = module(x)
    with torch.no_grad():
        fresh = x.clone()
        out = apply_in_place(module, fresh)
        assert torch.equal(out, expected)
        if name in ("gelu", "gelu_new", "relu", "silu"):
            assert out.data_ptr() == fresh.data_ptr()  # written over its input
    leaf = x.clone().requires_grad_()
    kept = leaf.detach().clone()
    out = apply_in_place(module, leaf)
    out.sum().backward()  # autograd on: the input is left alone and gradients flow
    assert torch.equal(leaf.detach(), kept) and leaf.grad is not None


def test_unknown_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="supported"):
        activation("swishy")
