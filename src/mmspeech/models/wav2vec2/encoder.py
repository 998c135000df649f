"""The transformer context network: convolutional position embedding + attention blocks.

One block class with a ``pre_norm`` switch covers both layouts of the reference:
``do_stable_layer_norm=False`` (base models: post-norm blocks, LayerNorm before the stack) and
``True`` (MMS, XLS-R: pre-norm blocks, LayerNorm after the stack, optional MMS adapters).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from mmspeech.models.wav2vec2.config import Wav2Vec2Config
from mmspeech.nn.activations import activation, apply_in_place
from mmspeech.nn.attention import MultiHeadAttention, padding_bias


class PositionalConvEmbedding(nn.Module):
    """A wide grouped conv over time whose output is added to the input (relative positions).

    The reference stores its weight with weight norm; checkpoints fold it into ``conv.weight``
    at load time (see :mod:`mmspeech.checkpoints`), so inference runs a plain conv.
    """

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        kernel = config.num_conv_pos_embeddings
        self.conv = nn.Conv1d(
            config.hidden_size,
            config.hidden_size,
            kernel_size=kernel,
            padding=kernel // 2,
            groups=config.num_conv_pos_embedding_groups,
        )
        # HuBERT variant: BatchNorm before the conv, and then no weight norm.
        self.batch_norm = (
            nn.BatchNorm1d(config.hidden_size)
            if getattr(config, "conv_pos_batch_norm", False)
            else None
        )
        self.trim = 1 if kernel % 2 == 0 else 0  # "same" padding for an even kernel
        self.activation = activation(config.feat_extract_activation)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C) position embedding (to be added by the caller)."""
        x = hidden_states.transpose(1, 2)  # (B, C, T)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        x = self.conv(x)
        if self.trim:
            x = x[:, :, : -self.trim]
        return self.activation(x).transpose(1, 2)


class FeedForward(nn.Module):
    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(config.hidden_act)
        self.intermediate_dropout = nn.Dropout(config.activation_dropout)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = apply_in_place(self.intermediate_act_fn, self.intermediate_dense(x))
        x = self.intermediate_dropout(x)
        return self.output_dropout(self.output_dense(x))


class AttnAdapter(nn.Module):
    """MMS per-language adapter: LayerNorm -> down to ``adapter_attn_dim`` -> ReLU -> up."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        assert config.adapter_attn_dim is not None
        self.norm = nn.LayerNorm(config.hidden_size)
        self.linear_1 = nn.Linear(config.hidden_size, config.adapter_attn_dim)
        self.act_fn = nn.ReLU()
        self.linear_2 = nn.Linear(config.adapter_attn_dim, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act_fn(self.linear_1(self.norm(x))))


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward, post-norm (base) or pre-norm (stable) with an adapter."""

    def __init__(self, config: Wav2Vec2Config, pre_norm: bool):
        super().__init__()
        self.pre_norm = pre_norm
        self.attention = MultiHeadAttention(
            config.hidden_size, config.num_attention_heads, dropout=config.attention_dropout
        )
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # The reference has MMS adapters in the pre-norm layout only.
        self.adapter_layer = (
            AttnAdapter(config) if pre_norm and config.adapter_attn_dim is not None else None
        )

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); ``bias`` is the additive attention bias or None."""
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.layer_norm(x), bias))
            x = x + self.feed_forward(self.final_layer_norm(x))
            if self.adapter_layer is not None:
                x = x + self.adapter_layer(x)
            return x
        x = self.layer_norm(x + self.dropout(self.attention(x, bias)))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    """Position embedding, the block stack, and the layout's LayerNorm (before or after)."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.layerdrop = config.layerdrop
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(config, self.pre_norm) for _ in range(config.num_hidden_layers)
        )

    def iter_hidden_states(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None
    ) -> Iterator[torch.Tensor]:
        """Yield the blocks' input, then each block's output (num_hidden_layers + 1 tensors).

        These are the reference's ``hidden_states``; in the pre-norm layout the final LayerNorm
        is not applied to them (:meth:`forward` applies it).

        Args:
            hidden_states: (B, T, C) projected features.
            mask: (B, T) bool, True on valid frames; None when nothing is padded.
        """
        if mask is not None:
            hidden_states = hidden_states.masked_fill(~mask[:, :, None], 0.0)
        bias = padding_bias(mask, hidden_states.dtype)
        x = hidden_states + self.pos_conv_embed(hidden_states)
        if not self.pre_norm:
            x = self.layer_norm(x)
        x = self.dropout(x)
        yield x
        for layer in self.layers:
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                continue  # LayerDrop: skip this block
            x = layer(x, bias)
            yield x

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C) contextual representations."""
        for x in self.iter_hidden_states(hidden_states, mask):  # noqa: B007
            pass  # keep only the last (``*_, x = ...`` would hold every layer's output)
        return self.layer_norm(x) if self.pre_norm else x
