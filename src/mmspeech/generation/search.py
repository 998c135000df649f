"""Greedy search and sampling over a sequence-to-sequence model with a key/value cache."""

from __future__ import annotations

import logging
from typing import Protocol, Self, TypeVar

import torch
from torch import nn

from mmspeech.generation.logits import apply_filters, build_filters, build_warpers
from mmspeech.generation.options import GenerationOptions
from mmspeech.models.text_decoders.cache import DecoderCache

logger = logging.getLogger(__name__)


class Encoded(Protocol):
    """Encoder output that a decoder attends to; rows can be selected (beams)."""

    def select(self, indices: torch.Tensor) -> Self: ...


EncodedT = TypeVar("EncodedT", bound=Encoded)


class Seq2SeqModel(Protocol[EncodedT]):
    """What decoding needs from a model: encode once, then decode step by step."""

    def encode(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> EncodedT: ...

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        encoded: EncodedT,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor: ...


def next_token_scores(
    model: Seq2SeqModel[EncodedT], tokens: torch.Tensor, encoded: EncodedT, cache: DecoderCache
) -> torch.Tensor:
    """Float32 logits (N, vocab) of the token after ``tokens`` (N, T); feeds only new tokens."""
    new_tokens = tokens[:, cache.length :]  # (N, T - cached)
    logits = model.decode(new_tokens, encoded, cache)  # (N, T_new, vocab)
    return logits[:, -1, :].float()


def greedy_search(
    model: Seq2SeqModel[EncodedT],
    encoded: EncodedT,
    tokens: torch.Tensor,
    options: GenerationOptions,
) -> torch.Tensor:
    """Pick the most likely token (or sample one, with ``do_sample``) until every sequence has
    ended or the length limit.

    Args:
        encoded: the encoder output for the B inputs.
        tokens: (B, T0) start tokens.

    Returns:
        (B, T) token ids, ``tokens`` first; finished sequences padded with the pad id.
    """
    start_length = tokens.shape[1]
    max_length = options.total_length(start_length)
    filters = build_filters(options, start_length) + build_warpers(options)
    generator = None
    if options.do_sample and options.seed is not None:
        generator = torch.Generator(device=tokens.device).manual_seed(options.seed)
    eos = torch.tensor(options.eos_ids, dtype=torch.long, device=tokens.device)
    pad = options.padding_id
    unfinished = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    cache = DecoderCache()
    while tokens.shape[1] < max_length:
        scores = apply_filters(filters, tokens, next_token_scores(model, tokens, encoded, cache))
        if options.do_sample:
            probs = nn.functional.softmax(scores, dim=-1)
            next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        else:
            next_tokens = scores.argmax(dim=-1)  # (B,)
        if eos.numel():
            assert pad is not None
            next_tokens = torch.where(unfinished, next_tokens, pad)
            unfinished &= ~torch.isin(next_tokens, eos)
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        if not bool(unfinished.any()):
            break
    return tokens
