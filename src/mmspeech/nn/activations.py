"""Activation functions by the names HF configs use (``hidden_act`` and the like)."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmspeech.errors import ConfigError

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class GeluTanh(nn.Module):
    """GELU with the tanh approximation (HF ``gelu_new`` / ``gelu_pytorch_tanh``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x, approximate="tanh")


class QuickGelu(nn.Module):
    """x * sigmoid(1.702 x) (HF ``quick_gelu``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class GeluFast(nn.Module):
    """The tanh GELU written out (HF ``gelu_fast``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(x * _SQRT_2_OVER_PI * (1.0 + 0.044715 * x * x)))


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_new": GeluTanh,
    "gelu_pytorch_tanh": GeluTanh,
    "gelu_fast": GeluFast,
    "quick_gelu": QuickGelu,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def apply_in_place(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, written over ``x`` when autograd is off and the activation has an
    in-place form (GELU, ReLU, SiLU); else ``module(x)``.

    For a fresh tensor the caller owns (a linear layer's output): a feed-forward block's
    intermediate (1500 frames × 5120 for mms-1b-all on 30 s) is then never allocated twice,
    and on this VM the page faults of a new 30 MB tensor cost more than the GELU itself.
    """
    if torch.is_grad_enabled():
        return module(x)
    if isinstance(module, nn.GELU):
        return torch.ops.aten.gelu_(x, approximate=module.approximate)
    if isinstance(module, GeluTanh):
        return torch.ops.aten.gelu_(x, approximate="tanh")
    if isinstance(module, nn.ReLU):
        return torch.relu_(x)
    if isinstance(module, nn.SiLU):
        return nn.functional.silu(x, inplace=True)
    return module(x)


def activation(name: str) -> nn.Module:
    """A fresh activation module for ``name``; ConfigError for an unknown name."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"Unknown activation {name!r}; supported: {', '.join(sorted(_ACTIVATIONS))}."
        ) from None
