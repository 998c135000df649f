"""Multi-head attention over ``torch.nn.functional.scaled_dot_product_attention``."""

from __future__ import annotations

import torch
from torch import nn

from mmspeech.nn.int8 import Int8Linear


def padding_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Turn a (B, T) keep-mask (True/1 = valid) into an additive (B, 1, 1, T) attention bias.

    Returns None when there is no mask or nothing is masked, so SDPA takes its fastest path.
    """
    if mask is None:
        return None
    keep = mask.bool()
    if bool(keep.all()):
        return None
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    bias.masked_fill_(~keep, torch.finfo(dtype).min)
    return bias[:, None, None, :]


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    bias: torch.Tensor | None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention over split heads, with the heads merged back.

    Args:
        query: (B, nh, T, hs).
        key, value: (B, nh, S, hs).
        bias: additive bias broadcastable to (B, nh, T, S), or None.
        dropout_p: attention dropout (pass 0.0 outside training).
        scale: None for 1 / sqrt(hs).

    Returns:
        (B, T, nh * hs).
    """
    attended = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=bias, dropout_p=dropout_p, scale=scale
    )  # (B, nh, T, hs)
    batch, heads, length, size = attended.shape
    return attended.transpose(1, 2).reshape(batch, length, heads * size)


class MultiHeadAttention(nn.Module):
    """Self-attention with separate q/k/v/out projections (the HF ``*_proj`` weight names)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(
        self, hidden_states: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend over the sequence.

        Args:
            hidden_states: (B, T, C).
            bias: additive attention bias broadcastable to (B, heads, T, T), e.g. from
                :func:`padding_bias`; None attends everywhere.

        Returns:
            (B, T, C).
        """
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)
        projections = (self.q_proj, self.k_proj, self.v_proj)
        if all(isinstance(layer, Int8Linear) for layer in projections):
            projected = Int8Linear.shared_input(hidden_states, projections)  # type: ignore[arg-type]
        else:
            projected = [layer(hidden_states) for layer in projections]
        # (B, nh, T, hs) each
        query, key, value = (part.view(shape).transpose(1, 2) for part in projected)
        attended = attend(query, key, value, bias, self.dropout if self.training else 0.0)
        return self.out_proj(attended)
