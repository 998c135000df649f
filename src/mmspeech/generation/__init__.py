"""Decoding for sequence-to-sequence models, kept apart from the models.

:func:`generate` resolves the options (checkpoint defaults, then the call's arguments), encodes
the input once and runs the search.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from mmspeech.generation.options import GenerationOptions, model_defaults
from mmspeech.generation.search import Seq2SeqModel, greedy_search

logger = logging.getLogger(__name__)

__all__ = ["GenerationOptions", "generate", "options_for"]


def options_for(model: Any, **overrides: Any) -> GenerationOptions:
    """The model's generation settings (``generation_config.json`` of its checkpoint, else its
    config), with ``overrides`` applied."""
    source = getattr(model, "source", None)
    generation_config = source.read_json("generation_config.json") if source else None
    defaults = model_defaults(model.config.to_dict(), generation_config)
    return defaults.updated(overrides)  # None is a value too: forced_eos_token_id=None disables


@torch.no_grad()
def generate(
    model: Seq2SeqModel[Any],
    input_values: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **options: Any,
) -> torch.Tensor:
    """Token ids (B * num_return_sequences, T) for a batch of waveforms.

    Args:
        model: a model with ``encode`` / ``decode`` (e.g. ``SpeechEncoderDecoderModel``).
        input_values: (B, samples) float.
        attention_mask: (B, samples) 1 on real samples; None if unpadded.
        **options: :class:`GenerationOptions` fields (``max_new_tokens``, ``num_beams``, …).
    """
    resolved = options_for(model, **options)
    if input_values.dim() == 1:
        input_values = input_values[None]
    encoded = model.encode(input_values, attention_mask)
    batch = input_values.shape[0]
    tokens = torch.full(
        (batch, 1), resolved.start_token_id, dtype=torch.long, device=input_values.device
    )
    if resolved.num_beams == 1:
        if resolved.num_return_sequences != 1:
            raise ValueError("Greedy search returns one sequence per input; use num_beams > 1.")
        return greedy_search(model, encoded, tokens, resolved)
    from mmspeech.generation.beam import beam_search

    return beam_search(model, encoded, tokens, resolved)
