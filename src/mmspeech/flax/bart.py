"""The BART / mBART decoder half as a causal LM with cross-attention, in Flax.

Names as the checkpoints: ``model.decoder.layers.{i}.encoder_attn.q_proj``, ``lm_head``.
BART blocks are post-norm; mBART blocks are pre-norm with a final LayerNorm.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmspeech.flax.cache import (
    DecoderCache,
    LayerCache,
    cross_keys_values,
    self_keys_values,
)
from mmspeech.flax.layers import (
    Array,
    activation,
    attend,
    dense,
    embed,
    key_mask,
    layer_norm,
    split_heads,
)
from mmspeech.models.text_decoders.bart import POSITION_OFFSET, BartConfig


class DecoderAttention(nn.Module):
    """Self-attention over a cache (keys grow) or cross-attention (keys fixed)."""

    width: int
    heads: int
    dropout: float
    std: float
    is_cross: bool

    @nn.compact
    def __call__(
        self,
        x: Array,
        memory: Array | None,
        mask: Array | None,
        cache: LayerCache | None,
        offset: Any,
        deterministic: bool,
    ) -> tuple[Array, LayerCache | None]:
        """(B, T, C) -> (B, T, C); ``mask`` is the cross mask or the decoder padding mask."""
        q_proj = dense(self.width, "q_proj", self.std)
        k_proj = dense(self.width, "k_proj", self.std)
        v_proj = dense(self.width, "v_proj", self.std)
        query = split_heads(q_proj(x), self.heads)
        if self.is_cross:

            def project() -> tuple[Array, Array]:
                assert memory is not None
                return split_heads(k_proj(memory), self.heads), split_heads(
                    v_proj(memory), self.heads
                )

            key, value, cache = cross_keys_values(cache, project)
            attention_mask = key_mask(mask)
        else:
            key, value = split_heads(k_proj(x), self.heads), split_heads(v_proj(x), self.heads)
            key, value, attention_mask, cache = self_keys_values(key, value, cache, offset, mask)
        drop = nn.Dropout(self.dropout)
        attended = attend(
            query, key, value, attention_mask, dropout=lambda p: drop(p, deterministic)
        )
        return dense(self.width, "out_proj", self.std)(attended), cache


class DecoderLayer(nn.Module):
    config: BartConfig

    @nn.compact
    def __call__(
        self,
        x: Array,
        memory: Array | None,
        memory_mask: Array | None,
        decoder_mask: Array | None,
        cache: LayerCache | None,
        offset: Any,
        deterministic: bool,
    ) -> tuple[Array, LayerCache | None]:
        config = self.config
        width, heads, std = config.d_model, config.decoder_attention_heads, config.init_std
        self_attn = DecoderAttention(
            width, heads, config.attention_dropout, std, False, name="self_attn"
        )
        encoder_attn = DecoderAttention(
            width, heads, config.attention_dropout, std, True, name="encoder_attn"
        )
        self_norm = layer_norm("self_attn_layer_norm")
        cross_norm = layer_norm("encoder_attn_layer_norm")
        final_norm = layer_norm("final_layer_norm")
        drop = nn.Dropout(config.dropout)
        act_drop = nn.Dropout(config.activation_dropout)
        fc1 = dense(config.decoder_ffn_dim, "fc1", std)
        fc2 = dense(width, "fc2", std)

        def feed_forward(h: Array) -> Array:
            h = act_drop(activation(config.activation_function)(fc1(h)), deterministic)
            return drop(fc2(h), deterministic)

        if config.pre_norm:
            h, cache = self_attn(self_norm(x), None, decoder_mask, cache, offset, deterministic)
            x = x + drop(h, deterministic)
            h, cache = encoder_attn(
                cross_norm(x), memory, memory_mask, cache, offset, deterministic
            )
            x = x + drop(h, deterministic)
            return x + feed_forward(final_norm(x)), cache
        h, cache = self_attn(x, None, decoder_mask, cache, offset, deterministic)
        x = self_norm(x + drop(h, deterministic))
        h, cache = encoder_attn(x, memory, memory_mask, cache, offset, deterministic)
        x = cross_norm(x + drop(h, deterministic))
        return final_norm(x + feed_forward(x)), cache


class BartDecoder(nn.Module):
    """Token + learned position embeddings, LayerNorm, the blocks (+ mBART's final norm)."""

    config: BartConfig

    @nn.compact
    def __call__(
        self,
        input_ids: Array,
        memory: Array | None,
        memory_mask: Array | None,
        decoder_mask: Array | None,
        cache: DecoderCache | None,
        offset: Any,
        deterministic: bool,
    ) -> tuple[Array, Array, DecoderCache | None]:
        """(hidden states (B, T, d_model), the token embedding matrix, the updated cache)."""
        config = self.config
        scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        embed_tokens = embed(config.vocab_size, config.d_model, "embed_tokens", config.init_std)
        embed_positions = embed(
            config.max_position_embeddings + POSITION_OFFSET,
            config.d_model,
            "embed_positions",
            config.init_std,
        )
        positions = offset + jnp.arange(input_ids.shape[1]) + POSITION_OFFSET
        x = embed_tokens(input_ids) * scale + embed_positions(positions)[None]
        x = layer_norm("layernorm_embedding")(x)
        x = nn.Dropout(config.dropout)(x, deterministic)
        new_cache = []
        for i in range(config.decoder_layers):
            layer_cache = cache[i] if cache is not None else None
            x, layer_cache = DecoderLayer(config, name=f"layers.{i}")(
                x, memory, memory_mask, decoder_mask, layer_cache, offset, deterministic
            )
            new_cache.append(layer_cache)
        if config.pre_norm:
            x = layer_norm("layer_norm")(x)
        out_cache = tuple(c for c in new_cache if c is not None) if cache is not None else None
        return x, embed_tokens.embedding, out_cache


class _DecoderWrapper(nn.Module):
    """``model.decoder`` (the checkpoint layout)."""

    config: BartConfig

    @nn.compact
    def __call__(self, *args: Any) -> tuple[Array, Array, DecoderCache | None]:
        return BartDecoder(self.config, name="decoder")(*args)


class FlaxBartForCausalLM(nn.Module):
    """The BART/mBART decoder with its LM head (tied to the token embedding by default)."""

    config: BartConfig

    @nn.compact
    def __call__(
        self,
        input_ids: Array,
        memory: Array | None,
        memory_mask: Array | None = None,
        decoder_mask: Array | None = None,
        cache: DecoderCache | None = None,
        offset: Any = 0,
        deterministic: bool = True,
    ) -> tuple[Array, DecoderCache | None]:
        """Next-token logits (B, T, vocab_size) and the updated cache."""
        hidden, embedding, cache = _DecoderWrapper(self.config, name="model")(
            input_ids, memory, memory_mask, decoder_mask, cache, offset, deterministic
        )
        if self.config.tie_word_embeddings:
            return hidden @ embedding.T, cache
        head = dense(self.config.vocab_size, "lm_head", self.config.init_std, use_bias=False)
        return head(hidden), cache
