"""Primitives shared by the Flax models: activations, LayerNorm, dense layers, attention.

Module and parameter names follow the PyTorch checkpoints: a Flax ``nn.Dense`` named ``q_proj``
holds ``kernel`` = the transposed ``q_proj.weight`` (see :mod:`mmspeech.flax.weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmspeech.errors import ConfigError

Array = jax.Array

_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}


def activation(name: str) -> Callable[[Array], Array]:
    """The activation function for a config's name (``hidden_act`` and the like)."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown activation {name!r}; supported: {', '.join(sorted(_ACTIVATIONS))}."
        ) from None


def dense(features: int, name: str, std: float = 0.02, use_bias: bool = True) -> nn.Dense:
    """A linear layer initialised like the PyTorch side (normal(0, std), zero bias)."""
    return nn.Dense(features, use_bias=use_bias, kernel_init=nn.initializers.normal(std), name=name)


def layer_norm(name: str, eps: float = 1e-5) -> nn.LayerNorm:
    """torch.nn.LayerNorm's computation (two-pass variance; its default eps is 1e-5)."""
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


def embed(count: int, features: int, name: str, std: float = 0.02) -> nn.Embed:
    return nn.Embed(count, features, embedding_init=nn.initializers.normal(std), name=name)


class Conv1D(nn.Module):
    """GPT-2's "Conv1D": ``x @ weight + bias`` with ``weight`` stored (in, out) as in its
    checkpoints (so the parameter keeps the checkpoint's name and layout)."""

    features: int
    std: float = 0.02

    @nn.compact
    def __call__(self, x: Array) -> Array:
        weight = self.param(
            "weight", nn.initializers.normal(self.std), (x.shape[-1], self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ weight + bias


def as_jax(array: Any, dtype: Any) -> Array:
    """A jax array of ``dtype`` from any array; one already on devices keeps its placement."""
    if isinstance(array, jax.Array):
        return array.astype(dtype)
    return jnp.asarray(np.asarray(array), dtype=dtype)


def split_heads(x: Array, heads: int) -> Array:
    """(B, T, C) -> (B, heads, T, C / heads)."""
    batch, length, width = x.shape
    return x.reshape(batch, length, heads, width // heads).transpose(0, 2, 1, 3)


def attend(
    query: Array,
    key: Array,
    value: Array,
    mask: Array | None,
    scale: float | None = None,
    dropout: Callable[[Array], Array] | None = None,
) -> Array:
    """Scaled dot-product attention over split heads, heads merged back.

    Args:
        query: (B, nh, T, hs).
        key, value: (B, nh, S, hs).
        mask: bool broadcastable to (B, nh, T, S), True where a key may be seen; None: all.
        scale: None for 1 / sqrt(hs).
        dropout: applied to the attention probabilities (training), or None.

    Returns:
        (B, T, nh * hs).
    """
    if scale is None:
        scale = query.shape[-1] ** -0.5
    scores = jnp.einsum("bhtd,bhsd->bhts", query, key).astype(jnp.float32) * scale
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(value.dtype)
    if dropout is not None:
        probs = dropout(probs)
    attended = jnp.einsum("bhts,bhsd->bhtd", probs, value)  # (B, nh, T, hs)
    batch, heads, length, size = attended.shape
    return attended.transpose(0, 2, 1, 3).reshape(batch, length, heads * size)


def key_mask(mask: Array | None) -> Array | None:
    """(B, S) keep-mask -> (B, 1, 1, S) attention mask; None stays None."""
    return None if mask is None else mask.astype(bool)[:, None, None, :]


def causal_mask(query_length: int, total: int, offset: Any) -> Array:
    """(1, 1, T, total) bool: query i (at position ``offset + i``) sees keys up to that
    position. ``offset`` may be traced (the number of cached tokens)."""
    query_positions = offset + jnp.arange(query_length)[:, None]
    key_positions = jnp.arange(total)[None, :]
    return (key_positions <= query_positions)[None, None]
