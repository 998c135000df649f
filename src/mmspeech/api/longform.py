"""Long-form pieces: batched windowed emissions and the cutting of stitched frames into segments.

Memory stays bounded: a window batch is in flight at a time, and the frames waiting to become a
segment are cut at pauses between words (or at ``max_segment_s``), so they never hold more than
one segment plus one window.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from mmspeech.api.options import SAMPLE_RATE
from mmspeech.api.source import AudioSource
from mmspeech.ctc.windows import Window, iter_windows, keep_frames
from mmspeech.results import Word

T = TypeVar("T")

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
    """Frames that make one segment: its words, its log-probs and where they start in seconds."""

    words: list[Word]
    log_probs: torch.Tensor  # (T, V)
    offset_s: float


def cut_segments(
    emissions: Iterable[torch.Tensor],
    words_of: WordsFn,
    *,
    offset_s: float,
    seconds_per_frame: float,
    min_silence_s: float,
    max_segment_s: float,
) -> Iterator[Piece]:
    """Group stitched frames into segments, lazily.

    A segment ends at the first pause of at least ``min_silence_s`` between two words; without
    such a pause it is cut at the last word boundary before ``max_segment_s``. The word at the
    end of the buffered frames may continue in the next window, so a cut always has a word after it.
    """
    buffer: torch.Tensor | None = None
    base = offset_s
    for frames in emissions:
        buffer = frames if buffer is None else torch.cat([buffer, frames])
        while buffer is not None and len(buffer):
            words = words_of(buffer, base)
            if not words:  # nothing said in the buffered frames: drop them
                base += len(buffer) * seconds_per_frame
                buffer = None
                break
            cut_s = _cut_point(words, base, min_silence_s, max_segment_s)
            if cut_s is None and len(buffer) * seconds_per_frame > max_segment_s + 1.0:
                cut_s = base + max_segment_s  # one endless "word" (no delimiter): cut it anyway
            if cut_s is None:
                break
            frame = max(1, round((cut_s - base) / seconds_per_frame))
            piece_words = words_of(buffer[:frame], base)
            if piece_words:
                yield Piece(piece_words, buffer[:frame], base)
            buffer, base = buffer[frame:], base + frame * seconds_per_frame
    if buffer is not None and len(buffer):
        words = words_of(buffer, base)
        if words:
            yield Piece(words, buffer, base)


def _cut_point(
    words: list[Word], base: float, min_silence_s: float, max_segment_s: float
) -> float | None:
    """When to end the next segment (in seconds), or None to wait for more frames."""
    for i in range(len(words) - 1):
        if words[i + 1].start - words[i].end >= min_silence_s:
            return (words[i].end + words[i + 1].start) / 2
    if len(words) < 2 or words[-1].end - base <= max_segment_s:
        return None
    limit = base + max_segment_s
    fitting = [i for i in range(len(words) - 1) if words[i].end <= limit]
    i = fitting[-1] if fitting else 0
    return (words[i].end + words[i + 1].start) / 2
