"""The speech encoder-decoder as one linen module: encoder -> (``enc_to_dec_proj``) -> decoder.

Parameters are named as the PyTorch checkpoint (``encoder.*``, ``decoder.*``,
``enc_to_dec_proj.*``); :class:`mmspeech.flax.FlaxSpeechEncoderDecoderModel` wraps this module
with its parameters, loading, generation and saving.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmspeech.errors import ConfigError
from mmspeech.flax.bart import FlaxBartForCausalLM
from mmspeech.flax.bert import FlaxBertLMHeadModel
from mmspeech.flax.cache import DecoderCache, empty_cache
from mmspeech.flax.gpt2 import FlaxGPT2LMHeadModel
from mmspeech.flax.layers import Array
from mmspeech.flax.wav2vec2 import Wav2Vec2Encoder
from mmspeech.models.speech_encoder_decoder.config import (
    DecoderConfigType,
    SpeechEncoderDecoderConfig,
)
from mmspeech.models.text_decoders.bart import BartConfig
from mmspeech.models.text_decoders.bert import BertConfig

IGNORE_INDEX = -100  # label value the loss skips

FlaxDecoder = FlaxBartForCausalLM | FlaxBertLMHeadModel | FlaxGPT2LMHeadModel


def build_decoder(config: DecoderConfigType, name: str | None = None) -> FlaxDecoder:
    """The Flax causal LM (with cross-attention) for a decoder config."""
    if isinstance(config, BartConfig):
        return FlaxBartForCausalLM(config, name=name)
    if isinstance(config, BertConfig):
        return FlaxBertLMHeadModel(config, name=name)
    return FlaxGPT2LMHeadModel(config, name=name)


def decoder_shape(config: DecoderConfigType) -> tuple[int, int, int]:
    """(layers, heads, head_dim) of a decoder's self-attention cache."""
    if isinstance(config, BartConfig):
        layers, heads = config.decoder_layers, config.decoder_attention_heads
    elif isinstance(config, BertConfig):
        layers, heads = config.num_hidden_layers, config.num_attention_heads
    else:
        layers, heads = config.n_layer, config.n_head
    return layers, heads, config.hidden_size // heads


def needs_projection(config: SpeechEncoderDecoderConfig) -> bool:
    """Whether the checkpoint has ``enc_to_dec_proj`` (the widths differ); checks the config."""
    encoder_width = config.encoder.output_hidden_size or config.encoder.hidden_size
    decoder_width = config.decoder.hidden_size
    cross_width = config.decoder.extra.get("cross_attention_hidden_size")
    if cross_width is not None and cross_width != decoder_width:
        raise ConfigError(
            f"Decoders whose cross-attention reads another width ({cross_width}) than their "
            f"own ({decoder_width}) are not supported; remove cross_attention_hidden_size "
            "to use an enc_to_dec_proj projection instead."
        )
    return encoder_width != decoder_width and cross_width is None


def empty_decoder_cache(
    config: SpeechEncoderDecoderConfig, batch: int, max_length: int, dtype: Any = jnp.float32
) -> DecoderCache:
    """A preallocated self-attention cache for ``max_length`` decoder tokens."""
    layers, heads, head_dim = decoder_shape(config.decoder)
    return empty_cache(layers, batch, heads, head_dim, max_length, dtype)


def shift_tokens_right(
    labels: Array, pad_token_id: int | None, start_token_id: int | None
) -> Array:
    """Decoder inputs for ``labels`` (B, T): start token first, -100 replaced by padding."""
    if start_token_id is None:
        raise ConfigError(
            "config.decoder_start_token_id is not set; it is needed to build decoder inputs "
            "from labels. Set it on the SpeechEncoderDecoderConfig."
        )
    if pad_token_id is None:
        raise ConfigError(
            "config.pad_token_id is not set; it is needed to replace -100 in shifted labels. "
            "Set it on the SpeechEncoderDecoderConfig."
        )
    start = jnp.full((labels.shape[0], 1), start_token_id, dtype=labels.dtype)
    shifted = jnp.concatenate([start, labels[:, :-1]], axis=1)
    return jnp.where(shifted == IGNORE_INDEX, pad_token_id, shifted)


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean token cross-entropy (float32) over labels that are not -100."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    valid = labels != IGNORE_INDEX
    picked = jnp.take_along_axis(log_probs, jnp.where(valid, labels, 0)[..., None], axis=-1)
    losses = -picked[..., 0] * valid
    return losses.sum() / jnp.maximum(valid.sum(), 1)


class SpeechEncoderDecoderModule(nn.Module):
    """Speech in, text logits out. Methods ``encode`` and ``decode`` run the two halves."""

    config: SpeechEncoderDecoderConfig

    def setup(self) -> None:
        config = self.config
        self.encoder = Wav2Vec2Encoder(config.encoder)
        self.decoder = build_decoder(config.decoder)
        if needs_projection(config):
            self.enc_to_dec_proj = nn.Dense(
                config.decoder.hidden_size,
                kernel_init=nn.initializers.normal(config.initializer_range),
            )

    def encode(
        self, input_values: Array, attention_mask: Array, deterministic: bool = True
    ) -> tuple[Array, Array]:
        """Encoder states in the decoder's width (B, S, C) and the (B, S) bool frame mask."""
        hidden, mask = self.encoder(input_values, attention_mask, deterministic)
        if needs_projection(self.config):
            hidden = self.enc_to_dec_proj(hidden)
        return hidden, mask

    def decode(
        self,
        input_ids: Array,
        encoder_hidden_states: Array | None,
        encoder_mask: Array | None,
        decoder_mask: Array | None = None,
        cache: DecoderCache | None = None,
        offset: Any = 0,
        deterministic: bool = True,
    ) -> tuple[Array, DecoderCache | None]:
        """Logits (B, T, vocab) for ``input_ids`` (B, T) after ``offset`` cached tokens."""
        return self.decoder(
            input_ids, encoder_hidden_states, encoder_mask, decoder_mask, cache, offset,
            deterministic,
        )  # fmt: skip

    def __call__(
        self,
        input_values: Array,
        attention_mask: Array,
        decoder_input_ids: Array,
        decoder_mask: Array | None = None,
        deterministic: bool = True,
    ) -> tuple[Array, Array, Array]:
        """Teacher-forced logits (B, T, vocab), encoder states and their frame mask."""
        hidden, mask = self.encode(input_values, attention_mask, deterministic)
        logits, _ = self.decode(
            decoder_input_ids, hidden, mask, decoder_mask, None, 0, deterministic
        )
        return logits, hidden, mask
