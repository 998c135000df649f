"""The BART / mBART decoder half as a causal LM with cross-attention (``BartForCausalLM``).

Parameter names follow the reference (``model.decoder.layers.{i}.encoder_attn.q_proj`` …,
``lm_head``). BART blocks are post-norm; mBART blocks are pre-norm with a final LayerNorm.
Self-attention keys/values are cached step by step, cross-attention keys/values once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from mmspeech.errors import ConfigError
from mmspeech.models.config import ModelConfig
from mmspeech.models.text_decoders.cache import (
    DecoderCache,
    LayerCache,
    causal_bias,
    cross_keys_values,
    extend_self,
    split_heads,
)
from mmspeech.nn.activations import activation
from mmspeech.nn.attention import attend

logger = logging.getLogger(__name__)

POSITION_OFFSET = 2  # BART's learned positions start at row 2 (a fairseq legacy)


@dataclass
class BartConfig(ModelConfig):
    """BART (the reference's defaults). Only the decoder half is used here."""

    model_type: ClassVar[str] = "bart"

    vocab_size: int = 50265  # rows of the token embedding and the LM head
    max_position_embeddings: int = 1024  # longest decoder input
    d_model: int = 1024  # width (HF ``hidden_size``)
    decoder_layers: int = 12  # decoder blocks
    decoder_ffn_dim: int = 4096  # feed-forward inner width
    decoder_attention_heads: int = 16  # heads of self- and cross-attention
    encoder_layers: int = 12  # encoder half (unused; kept so configs round-trip)
    encoder_ffn_dim: int = 4096
    encoder_attention_heads: int = 16
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0  # probability of skipping a block in training
    activation_function: str = "gelu"  # feed-forward activation
    dropout: float = 0.1  # residual dropout
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02  # std of the random initialisation
    classifier_dropout: float = 0.0
    scale_embedding: bool = False  # multiply token embeddings by sqrt(d_model)
    use_cache: bool = True
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 2
    forced_eos_token_id: int | list[int] | None = 2  # generation: end with eos at max_length
    is_encoder_decoder: bool = True  # False once used as a causal LM
    is_decoder: bool = False  # True: causal LM (set by speech encoder-decoder configs)
    add_cross_attention: bool = False  # True: attend to encoder states
    tie_word_embeddings: bool = True  # lm_head shares the token embedding's weight
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    pre_norm: ClassVar[bool] = False  # BART: post-norm blocks, no final LayerNorm

    def __post_init__(self) -> None:
        if self.d_model % self.decoder_attention_heads:
            raise ConfigError(
                f"d_model {self.d_model} is not divisible by "
                f"decoder_attention_heads {self.decoder_attention_heads}."
            )

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def initializer_range(self) -> float:
        return self.init_std


@dataclass
class MBartConfig(BartConfig):
    """mBART: BART with pre-norm blocks and a final LayerNorm (reference defaults)."""

    model_type: ClassVar[str] = "mbart"

    decoder_start_token_id: int | None = None

    pre_norm: ClassVar[bool] = True


class DecoderAttention(nn.Module):
    """Multi-head attention over a cache: self-attention (keys grow) or cross-attention (fixed)."""

    def __init__(self, width: int, heads: int, dropout: float, is_cross: bool):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.is_cross = is_cross
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(
        self,
        hidden_states: torch.Tensor,
        memory: torch.Tensor | None,
        bias: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        """Attend from ``hidden_states`` (B, T, C) to itself or to ``memory`` (B, S, C).

        Args:
            memory: encoder states for cross-attention (unused once the cache holds them).
            bias: additive bias broadcastable to (B, heads, T, keys), or None.
            cache: this block's cache, read and updated in place; None to cache nothing.
        """
        query = split_heads(self.q_proj(hidden_states), self.heads)  # (B, nh, T, hs)
        if self.is_cross:

            def project() -> tuple[torch.Tensor, torch.Tensor]:
                assert memory is not None
                return split_heads(self.k_proj(memory), self.heads), split_heads(
                    self.v_proj(memory), self.heads
                )

            key, value = cross_keys_values(cache, project)
        else:
            key = split_heads(self.k_proj(hidden_states), self.heads)
            value = split_heads(self.v_proj(hidden_states), self.heads)
            key, value = extend_self(cache, key, value)
        attended = attend(query, key, value, bias, self.dropout if self.training else 0.0)
        return self.out_proj(attended)


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention, feed-forward; post-norm (BART) or pre-norm (mBART)."""

    def __init__(self, config: BartConfig):
        super().__init__()
        width = config.d_model
        self.pre_norm = config.pre_norm
        heads, dropout = config.decoder_attention_heads, config.attention_dropout
        self.self_attn = DecoderAttention(width, heads, dropout, is_cross=False)
        self.self_attn_layer_norm = nn.LayerNorm(width)
        self.encoder_attn = DecoderAttention(width, heads, dropout, is_cross=True)
        self.encoder_attn_layer_norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, config.decoder_ffn_dim)
        self.activation_fn = activation(config.activation_function)
        self.activation_dropout = nn.Dropout(config.activation_dropout)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, width)
        self.final_layer_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(config.dropout)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation_dropout(self.activation_fn(self.fc1(x)))
        return self.dropout(self.fc2(x))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        self_bias: torch.Tensor | None,
        cross_bias: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        if self.pre_norm:
            x = x + self.dropout(
                self.self_attn(self.self_attn_layer_norm(x), None, self_bias, cache)
            )
            attended = self.encoder_attn(self.encoder_attn_layer_norm(x), memory, cross_bias, cache)
            x = x + self.dropout(attended)
            return x + self._feed_forward(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, None, self_bias, cache)))
        attended = self.encoder_attn(x, memory, cross_bias, cache)
        x = self.encoder_attn_layer_norm(x + self.dropout(attended))
        return self.final_layer_norm(x + self._feed_forward(x))


class BartDecoder(nn.Module):
    """Token + learned position embeddings, LayerNorm, the block stack (+ mBART's final norm)."""

    def __init__(self, config: BartConfig):
        super().__init__()
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.layerdrop = config.decoder_layerdrop
        self.embed_tokens = nn.Embedding(
            config.vocab_size, config.d_model, padding_idx=config.pad_token_id
        )
        self.embed_positions = nn.Embedding(
            config.max_position_embeddings + POSITION_OFFSET, config.d_model
        )
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        self.layer_norm = nn.LayerNorm(config.d_model) if config.pre_norm else None
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        encoder_bias: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Decoder states (B, T, d_model) for ``input_ids`` (B, T) following the cached tokens.

        Args:
            encoder_hidden_states: (B, S, d_model); may be None once ``cache`` holds them.
            encoder_bias: additive (B, 1, 1, S) bias masking padded frames, or None.
            cache: updated in place with the new tokens' keys and values.
        """
        past = cache.length if cache is not None else 0
        length = input_ids.shape[1]
        positions = torch.arange(past, past + length, device=input_ids.device) + POSITION_OFFSET
        x = self.embed_tokens(input_ids) * self.embed_scale + self.embed_positions(positions)
        x = self.dropout(self.layernorm_embedding(x))
        self_bias = causal_bias(length, past, x.dtype, x.device)
        for index, layer in enumerate(self.layers):
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                continue  # LayerDrop
            layer_cache = cache.layer(index) if cache is not None else None
            x = layer(x, encoder_hidden_states, self_bias, encoder_bias, layer_cache)
        return self.layer_norm(x) if self.layer_norm is not None else x


class _DecoderWrapper(nn.Module):
    """Holds the decoder under ``model.decoder`` (the reference's checkpoint layout)."""

    def __init__(self, config: BartConfig):
        super().__init__()
        self.decoder = BartDecoder(config)


class BartForCausalLM(nn.Module):
    """The BART/mBART decoder with its LM head (tied to the token embedding by default)."""

    def __init__(self, config: BartConfig):
        super().__init__()
        self.config = config
        self.model = _DecoderWrapper(config)
        # A tied head has no tensor of its own (the reference does not save one either).
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else nn.Linear(config.d_model, config.vocab_size, bias=False)
        )

    @property
    def output_weight(self) -> torch.Tensor:
        """(vocab_size, d_model) weight of the LM head."""
        if self.lm_head is None:
            return self.model.decoder.embed_tokens.weight
        return self.lm_head.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        encoder_bias: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size); arguments as :meth:`BartDecoder.forward`."""
        hidden = self.model.decoder(input_ids, encoder_hidden_states, encoder_bias, cache)
        return nn.functional.linear(hidden, self.output_weight)
