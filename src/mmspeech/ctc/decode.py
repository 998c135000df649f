"""Greedy CTC decoding with per-token confidence, and CTC tokens → timed words.

A CTC model emits one distribution per frame (20 ms for wav2vec2 at 16 kHz). Greedy decoding takes
the most probable label per frame, merges runs of the same label and drops the blank. Each kept
token remembers the frames of its run, which is what gives timestamps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from mmspeech.errors import ConfigError
from mmspeech.results import Word

T = TypeVar("T", bound=Hashable)
Item = TypeVar("Item")


@dataclass(frozen=True)
class TokenSpan:
    """One CTC token placed on frames ``[start_frame, end_frame)``.

    ``probability`` is the mean, over those frames, of the token's frame probability (in [0, 1]).
    """

    token_id: int
    start_frame: int
    end_frame: int  # exclusive
    probability: float


def runs(items: Iterable[T]) -> list[tuple[T, int, int]]:
    """Runs of equal consecutive items as ``(item, start, end)`` with ``end`` exclusive."""
    out, end = [], 0
    for item, group in itertools.groupby(items):
        start, end = end, end + sum(1 for _ in group)
        out.append((item, start, end))
    return out


def split_words(items: Sequence[Item], is_delimiter: Callable[[Item], bool]) -> list[list[Item]]:
    """The non-empty runs of items between delimiters (leading/trailing/double ones ignored)."""
    return [list(group) for key, group in itertools.groupby(items, key=is_delimiter) if not key]


def as_log_probs(scores: Any) -> torch.Tensor:
    """``(T, V)`` logits or log-probabilities (tensor or array) → float32 log-probabilities.

    ``log_softmax`` of log-probabilities is the identity, so either input is accepted.
    """
    if isinstance(scores, np.ndarray):
        scores = torch.from_numpy(scores)
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or scores.shape[1] == 0:
        raise ConfigError(
            "Expected CTC scores of shape (frames, vocab) as a tensor or array; found "
            f"{type(scores).__name__} of shape {tuple(getattr(scores, 'shape', ()))}."
        )
    return torch.log_softmax(scores.detach().to(torch.float32), dim=-1)


def greedy_spans(log_probs: Any, blank_id: int) -> list[TokenSpan]:
    """Best label per frame, runs merged, blanks dropped.

    Args:
        log_probs: ``(T, V)`` log-probabilities (or logits; normalised here), tensor or array.
        blank_id: the CTC blank (the pad token of wav2vec2 vocabularies).

    Returns:
        The decoded tokens in order; a token's probability is the **mean** of its frame
        probabilities over its run.
    """
    scores = as_log_probs(log_probs)
    if not 0 <= blank_id < scores.shape[1]:
        raise ConfigError(f"blank_id={blank_id} is outside the vocabulary of {scores.shape[1]}.")
    best, ids = scores.max(dim=-1)  # (T,), (T,)
    probs = best.exp().tolist()
    spans = []
    for token, start, end in runs(ids.tolist()):
        if token != blank_id:
            mean = sum(probs[start:end]) / (end - start)
            spans.append(TokenSpan(int(token), start, end, float(mean)))
    return spans


def spans_to_words(
    spans: Sequence[TokenSpan],
    id_to_token: Mapping[int, str],
    word_delimiter: str = "|",
    seconds_per_frame: float = 0.02,
    offset_s: float = 0.0,
) -> list[Word]:
    """Group token spans into words at the word delimiter and put them in seconds.

    A word runs from its first token's first frame to its last token's end frame; its probability
    is the mean of its tokens' probabilities. Times are ``offset_s + frame * seconds_per_frame``
    (pass the window's start as ``offset_s`` for stitched long-form output).
    """
    unknown = sorted({s.token_id for s in spans if s.token_id not in id_to_token})
    if unknown:
        raise ConfigError(
            f"Token ids {unknown[:5]} are not in the vocabulary given to spans_to_words "
            f"({len(id_to_token)} tokens): pass the id → token map of the model's language."
        )
    words = []
    for group in split_words(spans, lambda s: id_to_token[s.token_id] == word_delimiter):
        words.append(
            Word(
                start=offset_s + group[0].start_frame * seconds_per_frame,
                end=offset_s + group[-1].end_frame * seconds_per_frame,
                text="".join(id_to_token[s.token_id] for s in group),
                probability=sum(s.probability for s in group) / len(group),
            )
        )
    return words
