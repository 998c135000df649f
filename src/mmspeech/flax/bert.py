"""BERT as a causal LM with cross-attention (``BertLMHeadModel``), in Flax.

Post-norm blocks; ``bert.encoder.layer.{i}.{attention,crossattention}.{self,output}``; the MLM
head ``cls.predictions`` gives the logits (its weight tied to the word embedding by default).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmspeech.flax.cache import DecoderCache, LayerCache, cross_keys_values, self_keys_values
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
from mmspeech.models.text_decoders.bert import BertConfig


class BertAttentionHeads(nn.Module):
    config: BertConfig
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
        width, heads, std = config.hidden_size, config.num_attention_heads, config.initializer_range
        query_proj, key_proj = dense(width, "query", std), dense(width, "key", std)
        value_proj = dense(width, "value", std)
        query = split_heads(query_proj(x), heads)
        if self.is_cross:

            def project() -> tuple[Array, Array]:
                assert memory is not None
                return split_heads(key_proj(memory), heads), split_heads(value_proj(memory), heads)

            key, value, cache = cross_keys_values(cache, project)
            attention_mask = key_mask(mask)
        else:
            key, value = split_heads(key_proj(x), heads), split_heads(value_proj(x), heads)
            key, value, attention_mask, cache = self_keys_values(key, value, cache, offset, mask)
        drop = nn.Dropout(config.attention_probs_dropout_prob)
        attended = attend(
            query, key, value, attention_mask, dropout=lambda p: drop(p, deterministic)
        )
        return attended, cache


class BertResidualOutput(nn.Module):
    """``dense`` -> dropout -> ``LayerNorm(x + residual)``."""

    config: BertConfig

    @nn.compact
    def __call__(self, x: Array, residual: Array, deterministic: bool) -> Array:
        config = self.config
        x = dense(config.hidden_size, "dense", config.initializer_range)(x)
        x = nn.Dropout(config.hidden_dropout_prob)(x, deterministic)
        return layer_norm("LayerNorm", config.layer_norm_eps)(x + residual)


class BertAttention(nn.Module):
    config: BertConfig
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
        heads = BertAttentionHeads(self.config, self.is_cross, name="self")
        attended, cache = heads(x, memory, mask, cache, offset, deterministic)
        return BertResidualOutput(self.config, name="output")(attended, x, deterministic), cache


class BertIntermediate(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        config = self.config
        h = dense(config.intermediate_size, "dense", config.initializer_range)(x)
        return activation(config.hidden_act)(h)


class BertLayer(nn.Module):
    """Causal self-attention, cross-attention, feed-forward; each post-norm."""

    config: BertConfig

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
        x, cache = BertAttention(config, False, name="attention")(
            x, None, decoder_mask, cache, offset, deterministic
        )
        x, cache = BertAttention(config, True, name="crossattention")(
            x, memory, memory_mask, cache, offset, deterministic
        )
        h = BertIntermediate(config, name="intermediate")(x)
        return BertResidualOutput(config, name="output")(h, x, deterministic), cache


class BertEmbeddings(nn.Module):
    """Word + segment (always 0) + absolute position embeddings, LayerNorm, dropout."""

    config: BertConfig

    @nn.compact
    def __call__(self, input_ids: Array, offset: Any, deterministic: bool) -> tuple[Array, Array]:
        """(embedded (B, T, C), the word embedding matrix (vocab, C))."""
        config = self.config
        width, std = config.hidden_size, config.initializer_range
        words = embed(config.vocab_size, width, "word_embeddings", std)
        positions = embed(config.max_position_embeddings, width, "position_embeddings", std)
        segments = embed(config.type_vocab_size, width, "token_type_embeddings", std)
        x = words(input_ids) + segments.embedding[0]
        x = x + positions(offset + jnp.arange(input_ids.shape[1]))[None]
        x = layer_norm("LayerNorm", config.layer_norm_eps)(x)
        return nn.Dropout(config.hidden_dropout_prob)(x, deterministic), words.embedding


class BertEncoderStack(nn.Module):
    """``encoder.layer.{i}``."""

    config: BertConfig

    @nn.compact
    def __call__(
        self,
        x: Array,
        memory: Array | None,
        memory_mask: Array | None,
        decoder_mask: Array | None,
        cache: DecoderCache | None,
        offset: Any,
        deterministic: bool,
    ) -> tuple[Array, DecoderCache | None]:
        new_cache = []
        for i in range(self.config.num_hidden_layers):
            layer_cache = cache[i] if cache is not None else None
            x, layer_cache = BertLayer(self.config, name=f"layer.{i}")(
                x, memory, memory_mask, decoder_mask, layer_cache, offset, deterministic
            )
            new_cache.append(layer_cache)
        if cache is None:
            return x, None
        return x, tuple(c for c in new_cache if c is not None)


class BertBody(nn.Module):
    """``bert.*``: embeddings and the layer stack (no pooler in the LM)."""

    config: BertConfig

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
        x, words = BertEmbeddings(self.config, name="embeddings")(input_ids, offset, deterministic)
        x, cache = BertEncoderStack(self.config, name="encoder")(
            x, memory, memory_mask, decoder_mask, cache, offset, deterministic
        )
        return x, words, cache


class BertPredictions(nn.Module):
    """``cls.predictions``: transform, then the output weight (tied: the word embedding)."""

    config: BertConfig

    @nn.compact
    def __call__(self, hidden: Array, words: Array) -> Array:
        config = self.config
        std = config.initializer_range
        h = dense(config.hidden_size, "transform.dense", std)(hidden)
        h = layer_norm("transform.LayerNorm", config.layer_norm_eps)(
            activation(config.hidden_act)(h)
        )
        bias = self.param("bias", nn.initializers.zeros, (config.vocab_size,))
        if config.tie_word_embeddings:
            return h @ words.T + bias
        return dense(config.vocab_size, "decoder", std, use_bias=False)(h) + bias


class _Head(nn.Module):
    """``cls`` (holds ``predictions``)."""

    config: BertConfig

    @nn.compact
    def __call__(self, hidden: Array, words: Array) -> Array:
        return BertPredictions(self.config, name="predictions")(hidden, words)


class FlaxBertLMHeadModel(nn.Module):
    """BERT decoder with its MLM head: ``bert.*`` + ``cls.predictions.*``."""

    config: BertConfig

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
        hidden, words, cache = BertBody(self.config, name="bert")(
            input_ids, memory, memory_mask, decoder_mask, cache, offset, deterministic
        )
        return _Head(self.config, name="cls")(hidden, words), cache
