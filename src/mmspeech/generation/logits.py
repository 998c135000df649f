"""Logit filters applied before choosing the next token (the reference's logits processors)."""

from __future__ import annotations

import math
from typing import Protocol

import torch

from mmspeech.generation.options import GenerationOptions


class LogitFilter(Protocol):
    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Filter ``scores`` (N, vocab) given the ``tokens`` (N, T) decoded so far."""
        ...


class MinLength:
    """Forbid end-of-sequence tokens while sequences are shorter than ``min_length``."""

    def __init__(self, min_length: int, eos_ids: list[int]):
        self.min_length = min_length
        self.eos_ids = eos_ids

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] < self.min_length:
            scores = scores.clone()
            scores[:, self.eos_ids] = -math.inf
        return scores


class ForcedToken:
    """Force ``token_ids`` (everything else -inf) when sequences are ``at_length`` long."""

    def __init__(self, at_length: int, token_ids: list[int]):
        self.at_length = at_length
        self.token_ids = token_ids

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] == self.at_length:
            scores = torch.full_like(scores, -math.inf)
            scores[:, self.token_ids] = 0.0
        return scores


def build_filters(options: GenerationOptions, start_length: int) -> list[LogitFilter]:
    """The filters the options call for, in the reference's order."""
    filters: list[LogitFilter] = []
    minimum = options.minimum_length(start_length)
    if minimum > 0 and options.eos_ids:
        filters.append(MinLength(minimum, options.eos_ids))
    if options.forced_bos_token_id is not None:
        filters.append(ForcedToken(1, [options.forced_bos_token_id]))
    if options.forced_eos_token_id is not None:
        forced = options.forced_eos_token_id
        ids = [forced] if isinstance(forced, int) else list(forced)
        filters.append(ForcedToken(options.total_length(start_length) - 1, ids))
    return filters


def apply_filters(
    filters: list[LogitFilter], tokens: torch.Tensor, scores: torch.Tensor
) -> torch.Tensor:
    for apply in filters:
        scores = apply(tokens, scores)
    return scores


class Temperature:
    """Divide the scores by ``temperature`` (sampling)."""

    def __init__(self, temperature: float):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.temperature = temperature

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopK:
    """Keep the ``top_k`` highest scores (ties with the k-th included); the rest -inf."""

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        if top_k <= 0:
            raise ValueError(f"top_k must be a positive integer, got {top_k}.")
        self.top_k = max(top_k, min_tokens_to_keep)

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.top_k, scores.shape[-1])
        threshold = torch.topk(scores, k)[0][..., -1:]  # (N, 1) the k-th score
        return scores.masked_fill(scores < threshold, -math.inf)


class TopP:
    """Nucleus filtering: drop the least likely tokens whose total probability is <= 1 - top_p."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        if not 0.0 <= top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1], got {top_p}.")
        self.top_p = top_p
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ascending, order = torch.sort(scores, descending=False)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)  # (N, V) mass of the tail
        drop_sorted = cumulative <= (1 - self.top_p)
        drop_sorted[..., -self.min_tokens_to_keep :] = False
        drop = drop_sorted.scatter(1, order, drop_sorted)
        return scores.masked_fill(drop, -math.inf)


def build_warpers(options: GenerationOptions, min_tokens_to_keep: int = 1) -> list[LogitFilter]:
    """The sampling filters (temperature, top-k, top-p), in the reference's order.

    Beam sampling keeps at least ``min_tokens_to_keep`` tokens (one more than the end tokens,
    so every beam can continue).
    """
    if not options.do_sample:
        return []
    warpers: list[LogitFilter] = []
    if options.temperature != 1.0:
        warpers.append(Temperature(options.temperature))
    if options.top_k:
        warpers.append(TopK(options.top_k, min_tokens_to_keep))
    if options.top_p < 1.0:
        warpers.append(TopP(options.top_p, min_tokens_to_keep))
    return warpers
