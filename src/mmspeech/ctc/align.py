"""CTC forced alignment: the single most probable frame path that spells a known transcript.

The targets ``y_1..y_L`` are interleaved with blanks into ``2L + 1`` states
``(blank, y_1, blank, y_2, ..., y_L, blank)``. A path moves, frame by frame, to the same state, the
next one, or skips a blank (allowed only between *different* labels: equal consecutive labels need
a blank between them). Viterbi keeps, per state, the best log-probability of a path ending there;
the update is vectorised over all states, the loop runs over time only. Memory is one byte per
(frame, state) for the back-pointers (5 minutes × 3,000 characters: 90 MB); longer inputs are
done in blocks within a fixed budget, so an hour of audio aligns in bounded memory.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mmspeech.ctc.decode import TokenSpan, as_log_probs, runs
from mmspeech.errors import AlignmentError

MAX_BACKPOINTER_BYTES = 256 * 2**20  # one byte per (frame, state); beyond it, blocks (see below)
STAR_FACTOR = 0.5  # the wildcard's probability on a frame, relative to the frame's best label


def min_frames(targets: Sequence[int]) -> int:
    """Frames a CTC path needs for ``targets``: one per token, plus a blank between repeats."""
    repeats = sum(1 for a, b in itertools.pairwise(targets) if a == b)
    return len(targets) + repeats


def viterbi_path(
    log_probs: Any,
    targets: Any,
    blank_id: int,
    *,
    max_backpointer_bytes: int = MAX_BACKPOINTER_BYTES,
) -> tuple[np.ndarray, float]:
    """The best CTC path of ``targets`` through ``log_probs``.

    Args:
        log_probs: ``(T, V)`` log-probabilities (or logits; normalised here), tensor or array.
        targets: ``(L,)`` token ids, no blanks.
        blank_id: the CTC blank.
        max_backpointer_bytes: memory for back-pointers. Beyond it, the frames are cut into
            blocks: one pass keeps only each block's starting scores, then each block is redone
            with its back-pointers while tracing back (twice the time, bounded memory).

    Returns:
        ``(states, log_prob)``: per frame the state index into the blank-interleaved targets
        (odd = token ``(s - 1) // 2``, even = blank), and the path's total log-probability.

    Raises:
        AlignmentError: empty targets, ids outside the vocabulary or equal to the blank, or more
            tokens than the frames can hold.
    """
    scores = as_log_probs(log_probs)  # (T, V)
    frames, vocab = scores.shape
    ids = _check_targets(targets, blank_id, vocab, frames)
    num_states = 2 * len(ids) + 1
    labels = np.full(num_states, blank_id, dtype=np.int64)
    labels[1::2] = ids  # (S,)
    # A skip s-2 → s is allowed into a token state whose label differs from the token before it.
    no_skip = np.ones(num_states, dtype=bool)
    no_skip[3::2] = labels[3::2] == labels[1:-2:2]
    # numpy, not torch, for the time loop: thousands of small steps, where torch's per-op
    # overhead and intra-op threads cost ~10x on a busy machine.
    emissions = scores.numpy()  # (T, V)
    best = np.full(num_states, -np.inf)  # (S,) best log-prob of a path ending in each state
    best[:2] = emissions[0, labels[:2]]  # a path starts on the first blank or the first token
    block = max(1, max_backpointer_bytes // num_states)
    blocks = [(t, min(t + block, frames)) for t in range(1, frames, block)]
    checkpoints = []
    for t0, t1 in blocks:  # first pass: scores at each block's start (one block: nothing to do)
        checkpoints.append(best.copy())
        if len(checkpoints) < len(blocks):
            _forward(best, emissions[t0:t1], labels, no_skip, None)
    states = np.empty(frames, dtype=np.int64)
    total = float("nan")
    for index in range(len(blocks) - 1, -2, -1):  # second pass, last block first
        if index >= 0:
            t0, t1 = blocks[index]
            best = checkpoints[index]
            back = np.empty((t1 - t0, num_states), dtype=np.uint8)  # 0 stay, 1 step, 2 skip
            _forward(best, emissions[t0:t1], labels, no_skip, back)
        if index == len(blocks) - 1:  # a path ends on the last token or the blank after it
            states[-1] = num_states - 1 if best[-1] >= best[-2] else num_states - 2
            total = float(best[states[-1]])
            if not np.isfinite(total):
                raise AlignmentError(
                    f"No CTC path spells the {len(ids)} target tokens in {frames} frames (every "
                    "path has probability zero): check that the emissions and the transcript "
                    "belong together."
                )
        if index >= 0:
            for t in range(t1 - 1, t0 - 1, -1):
                states[t - 1] = states[t] - back[t - t0, states[t]]
    return states, total


def _forward(
    best: np.ndarray,
    emissions: np.ndarray,
    labels: np.ndarray,
    no_skip: np.ndarray,
    back: np.ndarray | None,
) -> None:
    """Advance the Viterbi scores ``best`` (S,) in place over ``emissions`` (T', V) frames,
    writing each frame's chosen move into ``back`` (T', S) if given."""
    step, skip = np.full_like(best, -np.inf), np.full_like(best, -np.inf)
    for t, row in enumerate(emissions):
        step[1:] = best[:-1]
        skip[2:] = best[:-2]
        skip[no_skip] = -np.inf
        moved = step > best
        np.maximum(best, step, out=best)
        skipped = skip > best
        np.maximum(best, skip, out=best)
        if back is not None:
            back[t] = np.where(skipped, 2, moved)
        best += row[labels]


def forced_align(
    log_probs: Any,
    targets: Any,
    blank_id: int,
    *,
    wildcard: bool = False,
    max_backpointer_bytes: int = MAX_BACKPOINTER_BYTES,
) -> list[TokenSpan]:
    """Place each target token on the frames of the best CTC path.

    Args:
        log_probs: ``(T, V)`` log-probabilities (or logits), tensor or array.
        targets: ``(L,)`` token ids of the transcript (no blanks), list, tensor or array.
        blank_id: the CTC blank.
        wildcard: the transcript may cover only part of the audio. A ``<star>`` token that
            matches any frame (as in the MMS alignment recipe) is put before and after the
            targets: it takes the audio the transcript does not speak, so the targets land
            where they are spoken (the star takes at least a frame at each end). The recipe
            gives the star probability 1 on every frame, which squeezes the edge tokens to their
            single best frame; here it gets the frame's best label at :data:`STAR_FACTOR` of its
            probability, so a token keeps the frames where it is (nearly) the best label.
        max_backpointer_bytes: memory bound of the search, see :func:`viterbi_path`.

    Returns:
        One :class:`TokenSpan` per target, in order; ``probability`` is the mean of the token's
        frame probabilities over the frames the path spends on it.

    Raises:
        AlignmentError: see :func:`viterbi_path`.
    """
    scores = as_log_probs(log_probs)
    ids = _as_ids(targets)
    path_scores, path_targets = scores, ids
    if wildcard:
        star = scores.shape[1]  # one more label: any label, a little less likely
        best = scores.max(dim=-1, keepdim=True).values  # (T, 1)
        path_scores = torch.cat([scores, best + math.log(STAR_FACTOR)], dim=1)
        path_targets = [star, *ids, star]
    states, _ = viterbi_path(
        path_scores, path_targets, blank_id, max_backpointer_bytes=max_backpointer_bytes
    )  # (log_softmax over the extra column shifts all states of a frame alike: same best path)
    spans = []
    for state, start, end in runs(states.tolist()):
        if state % 2 == 1:
            token = path_targets[(state - 1) // 2]
            if wildcard and token == star:
                continue
            probability = float(scores[start:end, token].exp().mean())
            spans.append(TokenSpan(token, start, end, probability))
    assert len(spans) == len(ids), "a Viterbi path visits every token state once"
    return spans


def alignment_score(
    log_probs: Any, spans: Sequence[TokenSpan], blank_id: int, wildcard: bool = False
) -> float:
    """How well an alignment explains the audio, in (0, 1].

    ``exp(-mean gap)``, the gap being, per frame, the log-probability of the frame's best label
    minus that of the label the alignment gives it (the span's token, else the blank). The
    frames are all of them, or with ``wildcard`` (as passed to :func:`forced_align`) those from
    the first token to the last (the star takes the rest for free). 1 when the alignment
    follows the greedy path; towards 0 when the transcript forces labels the model does not
    hear (other words, or a partial transcript aligned without the wildcard).
    """
    if not spans:
        return 0.0
    scores = as_log_probs(log_probs)
    first, last = (spans[0].start_frame, spans[-1].end_frame) if wildcard else (0, len(scores))
    path = scores[first:last, blank_id].clone()  # (F,)
    for span in spans:
        frames = slice(span.start_frame - first, span.end_frame - first)
        path[frames] = scores[span.start_frame : span.end_frame, span.token_id]
    gap = scores[first:last].max(dim=-1).values - path
    return float(torch.exp(-gap.mean()))


def _as_ids(targets: Any) -> list[int]:
    values = targets.tolist() if hasattr(targets, "tolist") else list(targets)
    if any(isinstance(v, list) for v in values):
        raise AlignmentError(
            f"Expected targets of shape (L,), found a nested sequence: {values[:3]}"
        )
    return [int(v) for v in values]


def _check_targets(targets: Any, blank_id: int, vocab: int, frames: int) -> list[int]:
    ids = _as_ids(targets)
    if not ids:
        raise AlignmentError(
            "The transcript is empty once normalised for the model's vocabulary: nothing to align. "
            "Pass text with characters the model knows."
        )
    bad = sorted({i for i in ids if not 0 <= i < vocab or i == blank_id})
    if bad:
        raise AlignmentError(
            f"Target ids {bad[:10]} are not alignable tokens: expected ids in [0, {vocab}) other "
            f"than the blank ({blank_id}). Map the transcript with the model's own vocabulary."
        )
    needed = min_frames(ids)
    if needed > frames:
        raise AlignmentError(
            f"The transcript needs at least {needed} frames ({len(ids)} tokens plus a blank "
            f"between each repeated pair) but the audio has only {frames}: the transcript is too "
            "long for this audio. Check that they belong together, or align shorter pieces."
        )
    return ids
