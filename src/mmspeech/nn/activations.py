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


def activation(name: str) -> nn.Module:
    """A fresh activation module for ``name``; ConfigError for an unknown name."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"Unknown activation {name!r}; supported: {', '.join(sorted(_ACTIVATIONS))}."
        ) from None
