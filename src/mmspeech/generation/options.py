"""Generation settings: one frozen dataclass, filled from the checkpoint and the call."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from mmspeech.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_NEW_TOKENS = 20  # the reference's "model-agnostic default" when no length is set


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode. Defaults are the reference's ``GenerationConfig`` defaults."""

    max_length: int | None = None  # longest output, start token included (None: 20 new tokens)
    max_new_tokens: int | None = None  # tokens after the start token (wins over max_length)
    min_length: int | None = None  # eos is forbidden before this length (start token included)
    min_new_tokens: int | None = None  # eos is forbidden before this many new tokens
    num_beams: int = 1  # 1: greedy search (or sampling)
    do_sample: bool = False  # sample from the filtered distribution (num_beams > 1: beam sampling)
    temperature: float = 1.0  # sampling: logits are divided by it
    top_k: int | None = 50  # sampling: keep the k most likely tokens (None or 0: all)
    top_p: float = 1.0  # sampling: keep the smallest set with this much probability mass
    seed: int | None = None  # sampling: seed of a private generator (None: torch's global RNG)
    length_penalty: float = 1.0  # beam scores are divided by length ** length_penalty
    early_stopping: bool | str = False  # beam search: stop when num_beams hypotheses are done
    num_return_sequences: int = 1  # hypotheses returned per input (<= num_beams)
    decoder_start_token_id: int | None = None  # first decoder input (default: bos)
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None  # ends a sequence
    pad_token_id: int | None = None  # fills finished sequences (default: the first eos)
    forced_bos_token_id: int | None = None  # the token forced right after the start token
    forced_eos_token_id: int | list[int] | None = None  # forced at the last position

    @property
    def eos_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else self.eos_token_id

    @property
    def start_token_id(self) -> int:
        start = self.decoder_start_token_id
        if start is None:
            start = self.bos_token_id
        if start is None:
            raise ConfigError(
                "No decoder_start_token_id (nor bos_token_id) is set in the config or "
                "generation_config.json; pass decoder_start_token_id=... to generate()."
            )
        return start

    @property
    def padding_id(self) -> int | None:
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.eos_ids[0] if self.eos_ids else None

    def total_length(self, start_length: int) -> int:
        """The maximum output length for prompts of ``start_length`` tokens."""
        if self.max_new_tokens is not None:
            return start_length + self.max_new_tokens
        if self.max_length is None:
            return start_length + DEFAULT_NEW_TOKENS
        return self.max_length

    def minimum_length(self, start_length: int) -> int:
        if self.min_new_tokens is not None:
            return start_length + self.min_new_tokens
        return self.min_length or 0

    def updated(self, values: dict[str, Any]) -> GenerationOptions:
        """A copy with ``values`` applied; unknown names raise a ConfigError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"Unknown generation options: {', '.join(unknown)}; "
                f"supported: {', '.join(sorted(known))}."
            )
        return dataclasses.replace(self, **values)


_FROM_CONFIG = (
    "decoder_start_token_id",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "max_length",
    "min_length",
    "num_beams",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "length_penalty",
    "early_stopping",
    "num_return_sequences",
)


def model_defaults(
    config_dict: dict[str, Any], generation_config: dict[str, Any] | None
) -> GenerationOptions:
    """The checkpoint's settings: ``generation_config.json`` if there is one, else the config.

    Like the reference, values the outer config leaves unset are taken from the decoder's
    config (this is how a BART decoder's ``forced_eos_token_id`` reaches generation).
    """
    defaults = GenerationOptions()
    if generation_config is not None:
        values = {k: v for k, v in generation_config.items() if k in _FROM_CONFIG}
        return defaults.updated({k: v for k, v in values.items() if v is not None})
    values = {k: config_dict[k] for k in _FROM_CONFIG if config_dict.get(k) is not None}
    decoder = config_dict.get("decoder") or {}
    for key in _FROM_CONFIG:
        unset = values.get(key, getattr(defaults, key)) == getattr(defaults, key)
        if unset and decoder.get(key) is not None:
            values[key] = decoder[key]
    return defaults.updated(values)
