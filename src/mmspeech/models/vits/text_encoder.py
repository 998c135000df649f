"""The VITS text encoder: token embedding, relative-position transformer, prior projection.

Maps characters to the parameters of the prior over latents, one (mean, log-std) pair per token
(``m_p`` and ``logs_p`` in the VITS paper's code). Module names follow the reference checkpoints
(``text_encoder.encoder.layers.0.attention.emb_rel_k`` …).
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch
from torch import nn

from mmspeech.models.vits.config import VitsConfig
from mmspeech.nn.activations import activation

logger = logging.getLogger(__name__)


class TextEncoderOutput(NamedTuple):
    hidden_states: torch.Tensor  # (B, T, hidden_size), zero on padding
    prior_means: torch.Tensor  # (B, T, flow_size), m_p in VITS
    prior_log_stds: torch.Tensor  # (B, T, flow_size), logs_p (called "log variances" in HF)


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with learned relative-position embeddings for keys and values
    (Shaw et al., 2018), limited to offsets in ``[-window_size, window_size]``."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.window_size = config.window_size
        width = config.hidden_size
        self.k_proj = nn.Linear(width, width, bias=config.use_bias)
        self.v_proj = nn.Linear(width, width, bias=config.use_bias)
        self.q_proj = nn.Linear(width, width, bias=config.use_bias)
        self.out_proj = nn.Linear(width, width, bias=config.use_bias)
        num_offsets = 2 * config.window_size + 1
        self.emb_rel_k = nn.Parameter(
            torch.randn(1, num_offsets, self.head_dim) * self.head_dim**-0.5
        )
        self.emb_rel_v = nn.Parameter(
            torch.randn(1, num_offsets, self.head_dim) * self.head_dim**-0.5
        )

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Args:
            hidden_states: (B, T, hidden_size).
            key_mask: (B, T) bool, True on real tokens; None when nothing is padded.

        Returns:
            (B, T, hidden_size).
        """
        batch, length, width = hidden_states.shape
        heads, head_dim = self.num_heads, self.head_dim

        def split(x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B*nh, T, hd)
            x = x.view(batch, length, heads, head_dim).transpose(1, 2)
            return x.reshape(batch * heads, length, head_dim)

        query = split(self.q_proj(hidden_states) * head_dim**-0.5)
        key = split(self.k_proj(hidden_states))
        value = split(self.v_proj(hidden_states))

        scores = torch.bmm(query, key.transpose(1, 2))  # (B*nh, T, T)
        # relative keys: q_i . E_k[j - i] inside the window, added along the band's diagonals
        # (O(T * window) work; nothing of size T x T is built for it)
        rel_scores = torch.matmul(query, self.emb_rel_k[0].transpose(0, 1))  # (B*nh, T, 2w+1)
        reach = min(self.window_size, length - 1)
        for offset in range(-reach, reach + 1):
            band = scores.diagonal(offset, dim1=1, dim2=2)  # (B*nh, T - |offset|): (i, i + offset)
            first_row = max(0, -offset)  # rows i with 0 <= i + offset < T
            band.add_(
                rel_scores[:, first_row : first_row + band.shape[1], offset + self.window_size]
            )
        if key_mask is not None:
            blocked = ~key_mask[:, None, None, :]  # (B, 1, 1, T)
            scores = scores.view(batch, heads, length, length)
            scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
            scores = scores.view(batch * heads, length, length)
        probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
        output = torch.bmm(probs, value)  # (B*nh, T, hd)
        # relative values: sum_j p_ij E_v[j - i]; gather p_ij for each offset r = j - i + w
        num_offsets = 2 * self.window_size + 1
        rows = torch.arange(length, device=hidden_states.device)[:, None]
        columns = rows + torch.arange(num_offsets, device=rows.device)[None, :] - self.window_size
        valid = (columns >= 0) & (columns < length)  # (T, 2w+1)
        rel_probs = probs.gather(2, columns.clamp(0, length - 1).expand(batch * heads, -1, -1))
        output = output + torch.matmul(rel_probs * valid, self.emb_rel_v[0])
        output = output.view(batch, heads, length, head_dim).transpose(1, 2)
        return self.out_proj(output.reshape(batch, length, width))


class ConvFeedForward(nn.Module):
    """Two 1-D convolutions over time (the transformer's feed-forward network in VITS)."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        kernel = config.ffn_kernel_size
        self.conv_1 = nn.Conv1d(config.hidden_size, config.ffn_dim, kernel)
        self.conv_2 = nn.Conv1d(config.ffn_dim, config.hidden_size, kernel)
        self.act = activation(config.hidden_act)
        self.padding = ((kernel - 1) // 2, kernel // 2)  # "same" output length, left-biased

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) and a (B, 1, T) float mask -> (B, T, C), zero on padding."""
        x = hidden_states.transpose(1, 2) * mask  # (B, C, T)
        x = self.act(self.conv_1(nn.functional.pad(x, self.padding)))
        x = self.conv_2(nn.functional.pad(x * mask, self.padding))
        return (x * mask).transpose(1, 2)


class EncoderLayer(nn.Module):
    """Post-norm transformer block: attention, add & norm, feed-forward, add & norm."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.attention = RelativeSelfAttention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = ConvFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        hidden_states = self.layer_norm(hidden_states + self.attention(hidden_states, key_mask))
        return self.final_layer_norm(hidden_states + self.feed_forward(hidden_states, mask))


class Encoder(nn.Module):
    """The stack of transformer blocks (``text_encoder.encoder`` in checkpoints)."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, T, C), (B, 1, T) float mask, (B, T) bool or None -> (B, T, C)."""
        hidden_states = hidden_states * mask.transpose(1, 2)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, key_mask)
        return hidden_states * mask.transpose(1, 2)


class TextEncoder(nn.Module):
    """Characters -> hidden states and the prior's per-token mean and log-std."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.flow_size = config.flow_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.encoder = Encoder(config)
        self.project = nn.Conv1d(config.hidden_size, 2 * config.flow_size, kernel_size=1)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> TextEncoderOutput:
        """Args:
        input_ids: (B, T) long token ids.
        mask: (B, 1, T) float, 1 on real tokens, 0 on padding.
        """
        key_mask = None if bool(mask.all()) else mask[:, 0, :].bool()
        embedded = self.embed_tokens(input_ids) * math.sqrt(self.hidden_size)  # (B, T, C)
        hidden_states = self.encoder(embedded, mask, key_mask)
        stats = self.project(hidden_states.transpose(1, 2)) * mask  # (B, 2*flow, T)
        means, log_stds = stats.transpose(1, 2).split(self.flow_size, dim=2)
        return TextEncoderOutput(hidden_states, means, log_stds)
