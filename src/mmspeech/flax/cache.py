"""Key/value caches of the Flax text decoders, preallocated so every step has static shapes.

Self-attention keys and values live in (B, heads, max_length, head_dim) buffers written at the
step's ``offset`` (``lax.dynamic_update_slice``); cross-attention keys and values are projected
from the encoder states at the first step and kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mmspeech.flax.layers import Array, causal_mask, key_mask


class LayerCache(NamedTuple):
    """One decoder block's cache (a pytree); the cross entries are None until projected."""

    self_key: Array  # (B, heads, max_length, head_dim)
    self_value: Array
    cross_key: Array | None = None  # (B, heads, S, head_dim)
    cross_value: Array | None = None


DecoderCache = tuple[LayerCache, ...]


def empty_cache(
    layers: int, batch: int, heads: int, head_dim: int, max_length: int, dtype: Any = jnp.float32
) -> DecoderCache:
    """A fresh cache for ``max_length`` tokens (cross-attention entries still empty)."""
    shape = (batch, heads, max_length, head_dim)
    return tuple(
        LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(layers)
    )


def reorder_cache(cache: DecoderCache, indices: Array) -> DecoderCache:
    """Keep rows ``indices`` (B',) of every cached array (beam search)."""
    return jax.tree_util.tree_map(lambda a: jnp.take(a, indices, axis=0), cache)


def self_keys_values(
    key: Array,
    value: Array,
    cache: LayerCache | None,
    offset: Any,
    decoder_mask: Array | None,
) -> tuple[Array, Array, Array, LayerCache | None]:
    """Keys, values and mask of causal self-attention over the cached tokens and the new ones.

    Args:
        key, value: (B, heads, T, head_dim) of the T new tokens.
        cache: this block's cache, or None (teacher forcing: the new tokens are all there is).
        offset: tokens already cached (an int or a traced int32 scalar).
        decoder_mask: (B, keys) 1 on real tokens, or None.

    Returns:
        keys, values, the bool mask broadcastable to (B, heads, T, keys), the updated cache.
    """
    length = key.shape[2]
    if cache is not None:
        start = (0, 0, offset, 0)
        key = jax.lax.dynamic_update_slice(cache.self_key, key.astype(cache.self_key.dtype), start)
        value = jax.lax.dynamic_update_slice(
            cache.self_value, value.astype(cache.self_value.dtype), start
        )
        cache = cache._replace(self_key=key, self_value=value)
    mask = causal_mask(length, key.shape[2], offset if cache is not None else 0)
    padding = key_mask(decoder_mask)
    if padding is not None:
        mask = mask & padding
    return key, value, mask, cache


def cross_keys_values(
    cache: LayerCache | None, project: Callable[[], tuple[Array, Array]]
) -> tuple[Array, Array, LayerCache | None]:
    """Cross-attention keys and values: from the cache, or ``project()``-ed (and cached)."""
    if cache is not None and cache.cross_key is not None:
        assert cache.cross_value is not None
        return cache.cross_key, cache.cross_value, cache
    key, value = project()
    if cache is not None:
        cache = cache._replace(cross_key=key, cross_value=value)
    return key, value, cache
