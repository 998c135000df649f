"""Beam search, step for step the reference's vectorised algorithm (so token ids agree).

Each input keeps ``num_beams`` running hypotheses and ``num_beams`` finished ones. At every step
the ``keep`` best continuations of all running beams are taken (``keep`` is large enough that
``num_beams`` of them do not end); those that end enter the finished set, scored by
``sum log p / generated_length ** length_penalty``.

With ``do_sample`` (beam sampling) the ``keep`` continuations are drawn without replacement from
the softmax of the accumulated, filtered scores instead of taken best-first.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from mmspeech.generation.logits import apply_filters, build_filters, build_warpers
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
    num_beams, length_penalty = options.num_beams, options.length_penalty
    early_stopping = options.early_stopping
    if options.num_return_sequences > num_beams:
        raise ValueError(
            f"num_return_sequences ({options.num_return_sequences}) must be <= num_beams "
            f"({num_beams})."
        )
    batch, prompt = tokens.shape
    device = tokens.device
    max_length = options.total_length(prompt)
    eos = torch.tensor(options.eos_ids, dtype=torch.long, device=device)
    # sampling keeps one token more than the end tokens, so that every beam can go on
    filters = build_filters(options, prompt) + build_warpers(options, max(2, 1 + eos.numel()))
    generator = None
    if options.do_sample and options.seed is not None:
        generator = torch.Generator(device=device).manual_seed(options.seed)
    keep = max(2, 1 + len(options.eos_ids)) * num_beams
    top_beams = torch.arange(keep, device=device) < num_beams  # (keep,)
    batch_offset = torch.arange(batch, device=device)[:, None] * num_beams  # (B, 1)

    running = torch.full((batch, num_beams, max_length), _fill_value(options), device=device)
    running[:, :, :prompt] = tokens[:, None, :]
    finished = running.clone()
    running_scores = torch.zeros(batch, num_beams, device=device)
    running_scores[:, 1:] = NEG  # all beams start equal: expand only the first
    finished_scores = torch.full((batch, num_beams), NEG, device=device)
    is_finished = torch.zeros(batch, num_beams, dtype=torch.bool, device=device)
    # flat (batch * beam) source row of every generated token; -1 where nothing was generated
    running_sources = torch.full((batch, num_beams, max_length - prompt), -1, device=device)
    finished_sources = running_sources.clone()
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)

    encoded = encoded.select(torch.arange(batch, device=device).repeat_interleave(num_beams))
    cache = DecoderCache()
    length = prompt
    while True:
        flat = running[:, :, :length].reshape(batch * num_beams, length)
        log_probs = nn.functional.log_softmax(next_token_scores(model, flat, encoded, cache), -1)
        log_probs = apply_filters(filters, flat, log_probs)  # (B * nb, V)
        vocab = log_probs.shape[-1]
        totals = log_probs.view(batch, num_beams, vocab) + running_scores[:, :, None]
        if options.do_sample:
            probs = nn.functional.softmax(totals.view(batch, -1), dim=-1)
            top_indices = torch.multinomial(probs, keep, generator=generator)  # (B, keep)
            top_scores = torch.gather(totals.view(batch, -1), 1, top_indices)
        else:
            top_scores, top_indices = torch.topk(totals.view(batch, -1), k=keep)  # (B, keep)
        source_beam = top_indices // vocab
        top_sequences = _gather(running, source_beam)  # (B, keep, max_length)
        top_sequences[:, :, length] = top_indices % vocab
        top_sources = _gather(running_sources, source_beam)
        top_sources[:, :, length - prompt] = source_beam + batch_offset

        if length + 1 >= max_length:
            ends = torch.ones(batch, keep, dtype=torch.bool, device=device)
        elif eos.numel():
            ends = torch.isin(top_sequences[:, :, length], eos)
        else:
            ends = torch.zeros(batch, keep, dtype=torch.bool, device=device)

        # the best num_beams continuations that do not end keep running
        open_scores = top_scores + ends.to(torch.float32) * NEG
        chosen = torch.topk(open_scores, k=num_beams)[1]
        running = _gather(top_sequences, chosen)
        running_scores = _gather(open_scores, chosen)
        running_sources = _gather(top_sources, chosen)

        # those that end among the top num_beams compete for the finished set
        just_finished = ends & top_beams[None, :]
        candidate = top_scores / ((length + 1 - prompt) ** length_penalty)
        batch_full = is_finished.all(dim=-1, keepdim=True) & (early_stopping is True)
        candidate += batch_full.to(torch.float32) * NEG
        candidate += (~improvable).to(torch.float32) * NEG
        candidate += (~just_finished) * NEG
        merged_scores = torch.cat([finished_scores, candidate], dim=1)
        best = torch.topk(merged_scores, k=num_beams)[1]
        finished = _gather(torch.cat([finished, top_sequences], dim=1), best)
        finished_scores = _gather(merged_scores, best)
        finished_sources = _gather(torch.cat([finished_sources, top_sources], dim=1), best)
        is_finished = _gather(torch.cat([is_finished, just_finished], dim=1), best)

        cache.reorder(running_sources[:, :, length - prompt].reshape(-1))
        length += 1

        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - prompt
        else:
            best_length = length - prompt
        best_running = running_scores[:, :1] / (best_length**length_penalty)
        worst_finished = torch.where(
            is_finished, finished_scores.min(dim=1, keepdim=True)[0], torch.tensor(NEG)
        )
        improvable = improvable & (best_running > worst_finished).any(dim=-1, keepdim=True)
        all_closed = bool(is_finished.all()) and early_stopping is True
        if not bool(improvable.any()) or all_closed or bool(ends.all()):
            break

    count = options.num_return_sequences
    sequences = finished[:, :count].reshape(batch * count, max_length)
    sources = finished_sources[:, :count].reshape(batch * count, -1)
    generated = int((sources + 1).bool().sum(dim=1).max())
    return sequences[:, : prompt + generated]
