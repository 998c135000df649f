"""Beam search, step for step the reference's vectorised algorithm (so token ids agree).

Each input keeps ``num_beams`` running hypotheses and ``num_beams`` finished ones
(:class:`BeamState`). At every step (:func:`beam_step`) the ``keep`` best continuations of all
running beams are taken (``keep`` is large enough that ``num_beams`` of them do not end); those
that end enter the finished set, scored by ``sum log p / generated_length ** length_penalty``.

With ``do_sample`` (beam sampling) the ``keep`` continuations are drawn without replacement from
the softmax of the accumulated, filtered scores instead of taken best-first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

from mmspeech.generation.logits import LogitFilter, apply_filters, build_filters, build_warpers
from mmspeech.generation.options import GenerationOptions
from mmspeech.generation.search import EncodedT, Seq2SeqModel, next_token_scores
from mmspeech.models.text_decoders.cache import DecoderCache

logger = logging.getLogger(__name__)

NEG = -1.0e9  # the reference's "impossible" score


def _gather(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``tensor[b, indices[b, k], ...]`` for (B, N, ...) and (B, K) -> (B, K, ...)."""
    while indices.dim() < tensor.dim():
        indices = indices.unsqueeze(-1)
    return torch.gather(tensor, 1, indices.expand(*indices.shape[:2], *tensor.shape[2:]))


def _fill_value(options: GenerationOptions) -> int:
    """What fills positions after a hypothesis ended. Like the reference, a pad id of 0 is
    falsy there and the first eos is used instead."""
    if not options.eos_ids:
        return -1
    return options.pad_token_id or options.eos_ids[0]


@dataclass(frozen=True)
class BeamSettings:
    """What stays the same for a whole search."""

    options: GenerationOptions
    prompt: int  # start tokens per input (T0)
    max_length: int  # prompt + the most tokens generated
    eos: torch.Tensor  # (E,) end-of-sequence ids
    keep: int  # continuations considered per step and input
    filters: list[LogitFilter]  # logit processors, then (for sampling) warpers
    generator: torch.Generator | None  # for beam sampling with a seed

    @classmethod
    def of(cls, options: GenerationOptions, prompt: int, device: torch.device) -> BeamSettings:
        eos = torch.tensor(options.eos_ids, dtype=torch.long, device=device)
        # sampling keeps one token more than the end tokens, so that every beam can go on
        filters = build_filters(options, prompt) + build_warpers(options, max(2, 1 + eos.numel()))
        generator = None
        if options.do_sample and options.seed is not None:
            generator = torch.Generator(device=device).manual_seed(options.seed)
        keep = max(2, 1 + len(options.eos_ids)) * options.num_beams
        return cls(options, prompt, options.total_length(prompt), eos, keep, filters, generator)


@dataclass(frozen=True)
class BeamState:
    """The running and finished hypotheses of B inputs after ``length`` tokens (nb beams, L the
    maximum length, G = L - prompt generated positions)."""

    running: torch.Tensor  # (B, nb, L) token ids of the running beams
    running_scores: torch.Tensor  # (B, nb) their summed log-probabilities
    # (B, nb, G) flat (batch * beam) source row of every generated token; -1 where none yet
    running_sources: torch.Tensor
    finished: torch.Tensor  # (B, nb, L) the best ended hypotheses so far
    finished_scores: torch.Tensor  # (B, nb) their length-penalised scores (NEG: empty slot)
    finished_sources: torch.Tensor  # (B, nb, G)
    is_finished: torch.Tensor  # (B, nb) bool: the slot holds an ended hypothesis
    improvable: torch.Tensor  # (B, 1) bool: a running beam can still beat the worst finished
    length: int  # tokens so far, prompt included

    @classmethod
    def start(cls, tokens: torch.Tensor, settings: BeamSettings) -> BeamState:
        """Every beam of an input holds its start tokens; only the first is expanded first."""
        batch, prompt = tokens.shape
        num_beams, device = settings.options.num_beams, tokens.device
        shape = (batch, num_beams, settings.max_length)
        running = torch.full(shape, _fill_value(settings.options), device=device)
        running[:, :, :prompt] = tokens[:, None, :]
        running_scores = torch.zeros(batch, num_beams, device=device)
        running_scores[:, 1:] = NEG  # all beams start equal: expand only the first
        sources = torch.full((batch, num_beams, settings.max_length - prompt), -1, device=device)
        return cls(
            running, running_scores, sources, running.clone(),
            torch.full((batch, num_beams), NEG, device=device), sources.clone(),
            torch.zeros(batch, num_beams, dtype=torch.bool, device=device),
            torch.ones(batch, 1, dtype=torch.bool, device=device), prompt,
        )  # fmt: skip

    def best(self, count: int, prompt: int) -> torch.Tensor:
        """(B * count, prompt + generated) the ``count`` best finished hypotheses per input."""
        batch, _, max_length = self.finished.shape
        sequences = self.finished[:, :count].reshape(batch * count, max_length)
        sources = self.finished_sources[:, :count].reshape(batch * count, -1)
        generated = int((sources + 1).bool().sum(dim=1).max())
        return sequences[:, : prompt + generated]


def beam_step(
    state: BeamState, log_probs: torch.Tensor, settings: BeamSettings
) -> tuple[BeamState, bool]:
    """Extend ``state`` by one token from the beams' filtered ``(B * nb, V)`` log-probs.

    Returns:
        The new state, and whether the search is over.
    """
    options, prompt, length = settings.options, settings.prompt, state.length
    batch, num_beams, _ = state.running.shape
    device = log_probs.device
    vocab = log_probs.shape[-1]
    totals = log_probs.view(batch, num_beams, vocab) + state.running_scores[:, :, None]
    if options.do_sample:
        probs = nn.functional.softmax(totals.view(batch, -1), dim=-1)
        top_indices = torch.multinomial(probs, settings.keep, generator=settings.generator)
        top_scores = torch.gather(totals.view(batch, -1), 1, top_indices)  # (B, keep)
    else:
        top_scores, top_indices = torch.topk(totals.view(batch, -1), k=settings.keep)
    source_beam = top_indices // vocab
    top_sequences = _gather(state.running, source_beam)  # (B, keep, L)
    top_sequences[:, :, length] = top_indices % vocab
    top_sources = _gather(state.running_sources, source_beam)  # (B, keep, G)
    batch_offset = torch.arange(batch, device=device)[:, None] * num_beams  # (B, 1)
    top_sources[:, :, length - prompt] = source_beam + batch_offset

    if length + 1 >= settings.max_length:
        ends = torch.ones(batch, settings.keep, dtype=torch.bool, device=device)
    elif settings.eos.numel():
        ends = torch.isin(top_sequences[:, :, length], settings.eos)
    else:
        ends = torch.zeros(batch, settings.keep, dtype=torch.bool, device=device)

    # the best num_beams continuations that do not end keep running
    open_scores = top_scores + ends.to(torch.float32) * NEG
    chosen = torch.topk(open_scores, k=num_beams)[1]
    running_scores = _gather(open_scores, chosen)

    # those that end among the top num_beams compete for the finished set
    top_beams = torch.arange(settings.keep, device=device) < num_beams  # (keep,)
    just_finished = ends & top_beams[None, :]
    candidate = top_scores / ((length + 1 - prompt) ** options.length_penalty)
    batch_full = state.is_finished.all(dim=-1, keepdim=True) & (options.early_stopping is True)
    candidate += batch_full.to(torch.float32) * NEG
    candidate += (~state.improvable).to(torch.float32) * NEG
    candidate += (~just_finished) * NEG
    merged_scores = torch.cat([state.finished_scores, candidate], dim=1)
    best = torch.topk(merged_scores, k=num_beams)[1]
    finished_scores = _gather(merged_scores, best)
    is_finished = _gather(torch.cat([state.is_finished, just_finished], dim=1), best)

    if options.early_stopping == "never" and options.length_penalty > 0.0:
        best_length = settings.max_length - prompt
    else:
        best_length = length + 1 - prompt
    best_running = running_scores[:, :1] / (best_length**options.length_penalty)
    worst_finished = torch.where(
        is_finished, finished_scores.min(dim=1, keepdim=True)[0], torch.tensor(NEG)
    )
    improvable = state.improvable & (best_running > worst_finished).any(dim=-1, keepdim=True)
    new = replace(
        state,
        running=_gather(top_sequences, chosen),
        running_scores=running_scores,
        running_sources=_gather(top_sources, chosen),
        finished=_gather(torch.cat([state.finished, top_sequences], dim=1), best),
        finished_scores=finished_scores,
        finished_sources=_gather(torch.cat([state.finished_sources, top_sources], dim=1), best),
        is_finished=is_finished,
        improvable=improvable,
        length=length + 1,
    )
    all_closed = bool(is_finished.all()) and options.early_stopping is True
    return new, not bool(improvable.any()) or all_closed or bool(ends.all())


def beam_search(
    model: Seq2SeqModel[EncodedT],
    encoded: EncodedT,
    tokens: torch.Tensor,
    options: GenerationOptions,
) -> torch.Tensor:
    """The best ``num_return_sequences`` hypotheses per input.

    Args:
        encoded: the encoder output for the B inputs (repeated per beam here).
        tokens: (B, T0) start tokens.

    Returns:
        (B * num_return_sequences, T) token ids, best first within each input.
    """
    num_beams = options.num_beams
    if options.num_return_sequences > num_beams:
        raise ValueError(
            f"num_return_sequences ({options.num_return_sequences}) must be <= num_beams "
            f"({num_beams})."
        )
    batch, prompt = tokens.shape
    settings = BeamSettings.of(options, prompt, tokens.device)
    state = BeamState.start(tokens, settings)
    encoded = encoded.select(torch.arange(batch, device=tokens.device).repeat_interleave(num_beams))
    cache = DecoderCache()
    done = False
    while not done:
        flat = state.running[:, :, : state.length].reshape(batch * num_beams, state.length)
        log_probs = nn.functional.log_softmax(next_token_scores(model, flat, encoded, cache), -1)
        log_probs = apply_filters(settings.filters, flat, log_probs)  # (B * nb, V)
        state, done = beam_step(state, log_probs, settings)
        # the cache follows each running beam to the row it continues
        cache.reorder(state.running_sources[:, :, state.length - 1 - prompt].reshape(-1))
    return state.best(options.num_return_sequences, prompt)
