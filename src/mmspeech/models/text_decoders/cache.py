"""Key/value caches of text decoders: self-attention grows, cross-attention is computed once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class LayerCache:
    """One decoder block's cached keys and values, each (B, heads, T, head_dim)."""

    self_keys: torch.Tensor | None = None  # grows by the new tokens at every step
    self_values: torch.Tensor | None = None
    cross_keys: torch.Tensor | None = None  # projected encoder states, computed once
    cross_values: torch.Tensor | None = None


@dataclass
class DecoderCache:
    """The cache of a whole decoder: one :class:`LayerCache` per block."""

    layers: list[LayerCache] = field(default_factory=list)

    def layer(self, index: int) -> LayerCache:
        while len(self.layers) <= index:
            self.layers.append(LayerCache())
        return self.layers[index]

    @property
    def length(self) -> int:
        """Tokens already seen by the self-attention (0 for a fresh cache)."""
        if not self.layers or self.layers[0].self_keys is None:
            return 0
        return int(self.layers[0].self_keys.shape[2])

    def reorder(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (B',) of every cached tensor (beam search)."""
        for layer in self.layers:
            for name in ("self_keys", "self_values", "cross_keys", "cross_values"):
                tensor = getattr(layer, name)
                if tensor is not None:
                    setattr(layer, name, tensor.index_select(0, indices))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, heads, T, C / heads)."""
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def cross_keys_values(
    cache: LayerCache | None, project: Callable[[], tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention keys and values: from the cache, or ``project()``-ed (and cached) once."""
    if cache is not None and cache.cross_keys is not None:
        assert cache.cross_values is not None
        return cache.cross_keys, cache.cross_values
    key, value = project()
    if cache is not None:
        cache.cross_keys, cache.cross_values = key, value
    return key, value


def extend_self(
    cache: LayerCache | None, key: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention keys and values of the new tokens appended to the cached ones (dim 2)."""
    if cache is None:
        return key, value
    if cache.self_keys is not None:
        assert cache.self_values is not None
        key = torch.cat([cache.self_keys, key], dim=2)  # (B, nh, T_past + T, hs)
        value = torch.cat([cache.self_values, value], dim=2)
    cache.self_keys, cache.self_values = key, value
    return key, value


def causal_bias(
    query_length: int, past_length: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor | None:
    """Additive (T_q, T_past + T_q) bias letting query i see keys up to ``past_length + i``.

    None for a single query (it may see everything cached).
    """
    if query_length == 1:
        return None
    total = past_length + query_length
    query_positions = torch.arange(past_length, total, device=device)[:, None]
    key_positions = torch.arange(total, device=device)[None, :]
    bias = torch.zeros(query_length, total, dtype=dtype, device=device)
    return bias.masked_fill_(key_positions > query_positions, torch.finfo(dtype).min)
