"""Long-form pieces: batched windowed emissions and the cutting of stitched frames into segments.

Memory stays bounded: a window batch is in flight at a time, and the frames waiting to become a
segment are cut at pauses (runs of blank frames) or at ``max_segment_s``, so they never hold more
than one segment plus one window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from mmspeech.api.options import SAMPLE_RATE
from mmspeech.api.source import AudioSource
from mmspeech.ctc.decode import runs
from mmspeech.ctc.windows import Window, iter_windows, keep_frames
from mmspeech.results import Word

T = TypeVar("T")
SCORE_PAD_S = 0.2  # silence on each side of a segment that its no-speech score also covers

# (B waveforms) -> B (T_b, V) float32 log-probability tensors
EmitFn = Callable[[Sequence[np.ndarray]], list[torch.Tensor]]
# ((T, V) log-probs, offset in seconds) -> timed words
WordsFn = Callable[[torch.Tensor, float], list[Word]]


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def iter_emissions(
    source: AudioSource,
    start: int,
    end: int,
    emit: EmitFn,
    *,
    window_s: float,
    context_s: float,
    batch_size: int,
    samples_per_frame: int,
) -> Iterator[torch.Tensor]:
    """Kept ``(T_w, V)`` log-prob frames of samples ``[start, end)``, window after window.

    Concatenated, they have as many frames as one unchunked forward pass over the range.
    """
    windows: Iterator[Window] = iter_windows(
        end - start, SAMPLE_RATE, window_s, context_s, samples_per_frame
    )
    for batch in batched(windows, batch_size):
        waveforms = [source.read(start + w.start, start + w.end) for w in batch]
        for window, log_probs in zip(batch, emit(waveforms), strict=True):
            yield keep_frames(log_probs, window, samples_per_frame)


@dataclass(frozen=True)
class Piece:
    """Frames that make one segment: its words, its log-probs and where they start in seconds.

    ``log_probs`` run from the segment's first non-silent frame to its last one; ``scored``
    adds up to :data:`SCORE_PAD_S` of the silence on each side, so that a blip of one letter in
    a long silence does not look like pure speech to the no-speech score.
    """

    words: list[Word]
    log_probs: torch.Tensor  # (T, V)
    offset_s: float
    scored: torch.Tensor  # (T + before + after, V)


def cut_segments(
    emissions: Iterable[torch.Tensor],
    words_of: WordsFn,
    *,
    offset_s: float,
    seconds_per_frame: float,
    min_silence_s: float,
    max_segment_s: float,
    silence_ids: Collection[int],
) -> Iterator[Piece]:
    """Group stitched frames into segments at pauses, lazily.

    A frame is *silent* when its most probable label is one of ``silence_ids`` (the blank and
    the word delimiter). A run of at least ``min_silence_s`` of silent frames ends a segment
    (and so the word before it) whatever the model writes around it. A segment never lasts
    more than ``max_segment_s``: without such a pause in time it is cut at the longest pause
    (a shorter silent run, e.g. a word boundary) in the second half of the allowed span, else
    in the first half, else at the limit itself. Silent frames between segments belong to none.

    A silent run at the end of the buffered frames may continue in the next window, so a run
    only counts as a pause once a non-silent frame follows it.
    """
    min_run = max(1, math.ceil(round(min_silence_s / seconds_per_frame, 6)))
    max_frames = max(1, math.floor(round(max_segment_s / seconds_per_frame, 6)))
    silent_ids = torch.tensor(sorted(silence_ids), dtype=torch.long)
    pad = round(SCORE_PAD_S / seconds_per_frame)
    buffer: torch.Tensor | None = None
    before: torch.Tensor | None = None  # the last silent frames before the next segment
    base = offset_s
    for frames in itertools.chain(emissions, [None]):
        final = frames is None
        if frames is not None:
            buffer = frames if buffer is None else torch.cat([buffer, frames])
        while buffer is not None and len(buffer):
            silent = torch.isin(buffer.argmax(dim=-1), silent_ids).tolist()
            lead = next((i for i, quiet in enumerate(silent) if not quiet), len(silent))
            if lead:  # silence before a segment belongs to no segment: drop it
                quiet = buffer[:lead] if before is None else torch.cat([before, buffer[:lead]])
                before = quiet[len(quiet) - pad :]
                buffer, base = buffer[lead:], base + lead * seconds_per_frame
                continue
            end = _segment_end(silent, min_run, max_frames, final)
            if end is None:
                break
            words = words_of(buffer[:end], base)
            if words:
                after = next((i for i, q in enumerate(silent[end : end + pad]) if not q), pad)
                scored = buffer[: end + after]
                if before is not None:
                    scored = torch.cat([before, scored])
                yield Piece(words, buffer[:end], base, scored)
            before = None
            buffer, base = buffer[end:], base + end * seconds_per_frame


def _segment_end(silent: list[bool], min_run: int, max_frames: int, final: bool) -> int | None:
    """Where the segment starting at frame 0 (not silent) ends, exclusive; None: wait for more.

    Args:
        silent: per buffered frame, whether it is silent.
        min_run: silent frames that make a pause.
        max_frames: the most frames a segment may span.
        final: no more frames will come (a trailing silent run is complete).
    """
    pauses = [(start, end) for quiet, start, end in runs(silent) if quiet and start > 0]
    for start, end in pauses:
        if start > max_frames:
            break
        if end - start >= min_run and (end < len(silent) or final):
            return start
    if len(silent) > max_frames:
        fitting = [
            (start, min(end, max_frames + 1)) for start, end in pauses if start <= max_frames
        ]
        late = [pause for pause in fitting if pause[0] >= max_frames // 2] or fitting
        if not late:
            return max_frames  # no pause at all: cut inside the word at the limit
        start, _ = max(late, key=lambda pause: (pause[1] - pause[0], pause[0]))
        return start
    if final:
        spoken = [i for i, quiet in enumerate(silent) if not quiet]
        return spoken[-1] + 1
    return None
