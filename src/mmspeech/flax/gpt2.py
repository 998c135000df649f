"""GPT-2 as a decoder with cross-attention (``GPT2LMHeadModel``), in Flax.

Pre-norm blocks with ``crossattention`` + ``ln_cross_attn``. The projections are GPT-2's
"Conv1D" layers, whose ``weight`` keeps the checkpoint's (in, out) layout.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmspeech.flax.cache import DecoderCache, LayerCache, cross_keys_values, self_keys_values
from mmspeech.flax.layers import (
    Array,
    Conv1D,
    activation,
    attend,
    dense,
    embed,
    key_mask,
    layer_norm,
    split_heads,
)
from mmspeech.models.text_decoders.gpt2 import GPT2Config


class GPT2Attention(nn.Module):
    """Causal self-attention (``c_attn``: q, k, v) or cross-attention (``q_attn``, ``c_attn``)."""

    config: GPT2Config
    layer_index: int
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
        config = self.config
        width, heads, std = config.n_embd, config.n_head, config.initializer_range
        scale = (width // heads) ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale /= float(self.layer_index + 1)
        if self.is_cross:
            query = split_heads(Conv1D(width, std, name="q_attn")(x), heads)
            c_attn = Conv1D(2 * width, std, name="c_attn")

            def project() -> tuple[Array, Array]:
                assert memory is not None
                key_states, value_states = jnp.split(c_attn(memory), 2, axis=-1)
                return split_heads(key_states, heads), split_heads(value_states, heads)

            key, value, cache = cross_keys_values(cache, project)
            attention_mask = key_mask(mask)
        else:
            states = jnp.split(Conv1D(3 * width, std, name="c_attn")(x), 3, axis=-1)
            query, key, value = (split_heads(s, heads) for s in states)
            key, value, attention_mask, cache = self_keys_values(key, value, cache, offset, mask)
        drop = nn.Dropout(config.attn_pdrop)
        attended = attend(
            query,
            key,
            value,
            attention_mask,
            scale=scale,
            dropout=lambda p: drop(p, deterministic=deterministic),
        )
        out = Conv1D(width, std, name="c_proj")(attended)
        return nn.Dropout(config.resid_pdrop)(out, deterministic), cache


class GPT2MLP(nn.Module):
    config: GPT2Config

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        config = self.config
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        h = activation(config.activation_function)(
            Conv1D(inner, config.initializer_range, name="c_fc")(x)
        )
        h = Conv1D(config.n_embd, config.initializer_range, name="c_proj")(h)
        return nn.Dropout(config.resid_pdrop)(h, deterministic)


class GPT2Block(nn.Module):
    """Pre-norm: self-attention, cross-attention, feed-forward, each with a residual."""

    config: GPT2Config
    layer_index: int

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
        config, i = self.config, self.layer_index
        eps = config.layer_norm_epsilon
        h, cache = GPT2Attention(config, i, False, name="attn")(
            layer_norm("ln_1", eps)(x), None, decoder_mask, cache, offset, deterministic
        )
        x = x + h
        h, cache = GPT2Attention(config, i, True, name="crossattention")(
            layer_norm("ln_cross_attn", eps)(x), memory, memory_mask, cache, offset, deterministic
        )
        x = x + h
        return x + GPT2MLP(config, name="mlp")(layer_norm("ln_2", eps)(x), deterministic), cache


class GPT2Model(nn.Module):
    """``transformer.*``: token and position embeddings, the blocks, the final LayerNorm."""

    config: GPT2Config

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
        config = self.config
        std = config.initializer_range
        wte = embed(config.vocab_size, config.n_embd, "wte", std)
        wpe = embed(config.n_positions, config.n_embd, "wpe", std)
        x = wte(input_ids) + wpe(offset + jnp.arange(input_ids.shape[1]))[None]
        x = nn.Dropout(config.embd_pdrop)(x, deterministic)
        new_cache = []
        for i in range(config.n_layer):
            layer_cache = cache[i] if cache is not None else None
            x, layer_cache = GPT2Block(config, i, name=f"h.{i}")(
                x, memory, memory_mask, decoder_mask, layer_cache, offset, deterministic
            )
            new_cache.append(layer_cache)
        x = layer_norm("ln_f", config.layer_norm_epsilon)(x)
        out_cache = tuple(c for c in new_cache if c is not None) if cache is not None else None
        return x, wte.embedding, out_cache


class FlaxGPT2LMHeadModel(nn.Module):
    """GPT-2 with its LM head (tied to ``wte`` by default)."""

    config: GPT2Config

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
        hidden, wte, cache = GPT2Model(self.config, name="transformer")(
            input_ids, memory, memory_mask, decoder_mask, cache, offset, deterministic
        )
        if self.config.tie_word_embeddings:
            return hidden @ wte.T, cache
        head = dense(self.config.vocab_size, "lm_head", self.config.initializer_range, False)
        return head(hidden), cache
