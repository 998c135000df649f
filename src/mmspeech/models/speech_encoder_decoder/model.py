"""Speech encoder-decoder: a wav2vec 2.0 / HuBERT encoder and a text decoder with cross-attention.

Checkpoint layout (the reference's): ``encoder.*`` is the bare speech encoder, ``decoder.*`` the
causal LM (``decoder.model.decoder.*`` + ``decoder.lm_head.*`` for BART/mBART,
``decoder.bert.*`` + ``decoder.cls.*`` for BERT, ``decoder.transformer.*`` + ``decoder.lm_head.*``
for GPT-2), and
``enc_to_dec_proj.*`` a linear map present only when the two widths differ.

The model computes logits; decoding lives in :mod:`mmspeech.generation`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import torch
from torch import nn

from mmspeech.errors import ConfigError
from mmspeech.models.pretrained import PretrainedModel
from mmspeech.models.speech_encoder_decoder.config import SpeechEncoderDecoderConfig
from mmspeech.models.text_decoders.bart import BartConfig, BartForCausalLM
from mmspeech.models.text_decoders.bert import BertConfig, BertLMHeadModel
from mmspeech.models.text_decoders.cache import DecoderCache
from mmspeech.models.text_decoders.gpt2 import GPT2Config, GPT2LMHeadModel
from mmspeech.models.wav2vec2.config import HubertConfig
from mmspeech.models.wav2vec2.model import HubertModel, Wav2Vec2Model
from mmspeech.nn.attention import padding_bias

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the loss skips


class EncodedSpeech(NamedTuple):
    """What the decoder attends to, computed once per input batch."""

    hidden_states: torch.Tensor  # (B, S, decoder hidden_size), after enc_to_dec_proj
    frame_mask: torch.Tensor | None  # (B, S) bool, True on valid frames; None if unpadded
    bias: torch.Tensor | None  # (B, 1, 1, S) additive cross-attention bias; None if unpadded

    def select(self, indices: torch.Tensor) -> EncodedSpeech:
        """Rows ``indices`` (B',), e.g. each input repeated once per beam."""
        return EncodedSpeech(
            self.hidden_states.index_select(0, indices),
            None if self.frame_mask is None else self.frame_mask.index_select(0, indices),
            None if self.bias is None else self.bias.index_select(0, indices),
        )


class Seq2SeqOutput(NamedTuple):
    logits: torch.Tensor  # (B, T, vocab_size)
    loss: torch.Tensor | None = None  # mean token cross-entropy when labels were given


def shift_tokens_right(
    labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
) -> torch.Tensor:
    """Decoder inputs for ``labels`` (B, T): start token first, -100 replaced by padding."""
    if decoder_start_token_id is None:
        raise ConfigError(
            "config.decoder_start_token_id is not set; it is needed to build decoder inputs "
            "from labels. Set it on the SpeechEncoderDecoderConfig."
        )
    if pad_token_id is None:
        raise ConfigError(
            "config.pad_token_id is not set; it is needed to replace -100 in shifted labels. "
            "Set it on the SpeechEncoderDecoderConfig."
        )
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill_(shifted == IGNORE_INDEX, pad_token_id)


TextDecoder = BartForCausalLM | BertLMHeadModel | GPT2LMHeadModel


def build_decoder(config: BartConfig | BertConfig | GPT2Config) -> TextDecoder:
    """The causal LM (with cross-attention) for a decoder config, randomly initialised."""
    if isinstance(config, BartConfig):
        return BartForCausalLM(config)
    if isinstance(config, BertConfig):
        return BertLMHeadModel(config)
    return GPT2LMHeadModel(config)


class SpeechEncoderDecoderModel(PretrainedModel):
    """Speech in, text logits out: ``encoder`` -> (``enc_to_dec_proj``) -> ``decoder``.

    ``SpeechEncoderDecoderModel(config)`` builds random weights;
    ``SpeechEncoderDecoderModel.from_pretrained(ref)`` loads a combined checkpoint;
    ``from_encoder_decoder_pretrained(encoder_ref, decoder_ref)`` joins two pretrained ones.
    """

    config_class = SpeechEncoderDecoderConfig

    def __init__(self, config: SpeechEncoderDecoderConfig):
        super().__init__()
        if not isinstance(config, SpeechEncoderDecoderConfig):
            raise ConfigError(
                f"SpeechEncoderDecoderModel needs a SpeechEncoderDecoderConfig, "
                f"got {type(config).__name__}."
            )
        self.config = config
        encoder_class = HubertModel if isinstance(config.encoder, HubertConfig) else Wav2Vec2Model
        self.encoder = encoder_class(config.encoder)
        self.decoder: TextDecoder = build_decoder(config.decoder)
        # checkpoint names of the weights from_encoder_decoder_pretrained created (to be trained)
        self.newly_initialized_keys: list[str] = []
        encoder_width = config.encoder.output_hidden_size or config.encoder.hidden_size
        decoder_width = config.decoder.hidden_size
        cross_width = config.decoder.extra.get("cross_attention_hidden_size")
        if cross_width is not None and cross_width != config.encoder.hidden_size:
            raise ConfigError(
                f"The decoder's cross_attention_hidden_size ({cross_width}) must equal the "
                f"encoder's hidden_size ({config.encoder.hidden_size})."
            )
        if cross_width is not None and cross_width != decoder_width:
            raise ConfigError(
                f"Decoders whose cross-attention reads another width ({cross_width}) than their "
                f"own ({decoder_width}) are not supported; remove cross_attention_hidden_size "
                "to use an enc_to_dec_proj projection instead."
            )
        self.enc_to_dec_proj: nn.Linear | None = None
        if encoder_width != decoder_width and cross_width is None:
            # The reference sizes this from the encoder's hidden_size, which equals
            # output_hidden_size in every runnable config; the output width is the right one.
            self.enc_to_dec_proj = nn.Linear(encoder_width, decoder_width)

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_ref: str | os.PathLike[str] | None = None,
        decoder_ref: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> SpeechEncoderDecoderModel:
        """Join a pretrained speech encoder and a pretrained text decoder (to be fine-tuned).

        The decoder becomes a causal LM with cross-attention; the weights neither checkpoint has
        (cross-attention, a missing LM head, ``enc_to_dec_proj``) are created, logged as a
        warning and listed in ``model.newly_initialized_keys``.

        Args:
            encoder_ref: a wav2vec 2.0 / HuBERT checkpoint (bare, pretraining or CTC layout).
            decoder_ref: a BERT, GPT-2, BART or mBART checkpoint (bare model or any LM layout).
            **kwargs: ``encoder_<name>`` / ``decoder_<name>`` go to that half (config fields,
                hub settings, ``model=`` an already built module); ``decoder_start_token_id``
                and the other names are fields of the combined config.
        """
        from mmspeech.checkpoints.encoder_decoder import load_encoder_decoder

        return load_encoder_decoder(cls, encoder_ref, decoder_ref, **kwargs)

    # -- the three steps: encode, decode, loss

    def encode(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> EncodedSpeech:
        """Encoder states in the decoder's width, with their padding mask.

        Args:
            input_values: (B, samples) float, as the feature extractor makes them.
            attention_mask: (B, samples) 1 on real samples, 0 on padding; None if unpadded.
        """
        encoded = self.encoder(input_values, attention_mask)
        hidden_states = encoded.last_hidden_state  # (B, S, encoder width)
        if self.enc_to_dec_proj is not None:
            hidden_states = self.enc_to_dec_proj(hidden_states)  # (B, S, decoder width)
        mask = encoded.frame_mask
        return EncodedSpeech(hidden_states, mask, padding_bias(mask, hidden_states.dtype))

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        encoded: EncodedSpeech,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab_size) for ``decoder_input_ids`` (B, T) after the cached tokens."""
        return self.decoder(decoder_input_ids, encoded.hidden_states, encoded.bias, cache)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> Seq2SeqOutput:
        """Teacher-forced logits, and the loss when ``labels`` are given.

        Args:
            input_values: (B, samples) float.
            attention_mask: (B, samples) 1 on real samples; None if unpadded.
            decoder_input_ids: (B, T) int64; built from ``labels`` when omitted.
            labels: (B, T) int64 targets, -100 where ignored.
        """
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("Pass decoder_input_ids, or labels to build them from.")
            decoder_input_ids = shift_tokens_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        logits = self.decode(decoder_input_ids, self.encode(input_values, attention_mask))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return Seq2SeqOutput(logits, loss)

    # -- conveniences of the reference's API

    def generate(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Decode token ids (B, T) starting with the decoder start token; see
        :func:`mmspeech.generation.generate` for the options."""
        from mmspeech.generation import generate

        return generate(self, input_values, attention_mask, **options)

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the encoder's convolutional feature encoder."""
        for param in self.encoder.feature_extractor.parameters():
            param.requires_grad = False
