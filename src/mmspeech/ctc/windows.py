"""Fixed windows with overlapping context for long audio, and the stitching of their CTC frames.

Each window is fed to the model on its own; only the frames of its *kept* region (the window minus
``context_s`` of context on each inner side) are used. The kept regions tile the audio, and every
window boundary is a multiple of the model's samples per frame, so the kept frames of all windows
concatenate to exactly as many frames as the unchunked forward pass gives (the idea of the
reference pipeline's ``stride``). Away from the edges of each kept region the frames match the
unchunked ones closely, since the context gives the transformer the same neighbourhood.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmspeech.errors import ConfigError

DEFAULT_SAMPLES_PER_FRAME = (
    320  # wav2vec2's feature encoder: strides 5·2·2·2·2·2·2 (20 ms @ 16 kHz)
)


@dataclass(frozen=True)
class Window:
    """One window of a long input, in samples.

    Feed ``audio[start:end]`` to the model and keep only the frames covering
    ``[keep_start, keep_end)``; the kept regions of consecutive windows touch.
    """

    start: int  # first sample fed to the model
    end: int  # one past the last sample fed to the model
    keep_start: int  # first sample whose frames are kept (a frame boundary)
    keep_end: int  # one past the last kept sample (a frame boundary, or the end of the audio)

    @property
    def is_last(self) -> bool:
        """True for the window reaching the end of the audio (its frames are kept to the end)."""
        return self.keep_end == self.end


def samples_per_frame(config: Any) -> int:
    """Samples per CTC output frame: the product of the feature encoder's conv strides.

    Args:
        config: a wav2vec2-family config (anything with ``conv_stride``) or a ``config.json``
            mapping with a ``"conv_stride"`` list.
    """
    strides = config.get("conv_stride") if isinstance(config, Mapping) else None
    if strides is None:
        strides = getattr(config, "conv_stride", None)
    if not strides:
        raise ConfigError(
            "Cannot tell the samples per frame: expected a config with conv_stride (e.g. "
            f"[5, 2, 2, 2, 2, 2, 2]), found {type(config).__name__} without it."
        )
    return int(functools.reduce(operator.mul, (int(s) for s in strides), 1))


def iter_windows(
    num_samples: int,
    sample_rate: int,
    window_s: float = 30.0,
    context_s: float = 5.0,
    samples_per_frame: int = DEFAULT_SAMPLES_PER_FRAME,
) -> Iterator[Window]:
    """Cover ``num_samples`` samples with windows of ``window_s`` seconds overlapping by context.

    Window length and context are rounded to whole frames. Each inner window edge has
    ``context_s`` of context that is fed to the model but not kept; the audio's own start and end
    are kept by the first and last windows. Audio no longer than one window is one window. The last
    window is moved back to be a full window when the audio allows it, so it never runs on a short
    scrap of audio (its extra left context is simply not kept).

    Args:
        num_samples: length of the audio in samples (> 0).
        sample_rate: samples per second.
        window_s: seconds fed to the model per window.
        context_s: seconds of context on each inner side of a window (at least one frame is
            used); must be < window_s / 2.
        samples_per_frame: the model's samples per output frame (see :func:`samples_per_frame`).

    Yields:
        :class:`Window` objects in order; their kept regions tile ``[0, num_samples)``.
    """
    if num_samples <= 0:
        raise ConfigError(
            f"Cannot window empty audio: expected num_samples > 0, found {num_samples}."
        )
    if sample_rate <= 0 or samples_per_frame <= 0:
        raise ConfigError(
            f"sample_rate and samples_per_frame must be positive; found {sample_rate} and "
            f"{samples_per_frame}."
        )
    frame = samples_per_frame
    window = max(1, round(window_s * sample_rate / frame)) * frame
    # At least one frame of context: a frame's receptive field reaches past its own samples.
    context = max(1, round(context_s * sample_rate / frame)) * frame
    step = window - 2 * context  # the kept length of an inner window
    if step <= 0:
        raise ConfigError(
            f"window_s={window_s} leaves nothing to keep with context_s={context_s} on each side "
            "(at least one frame): expected window_s > 2 * context_s (e.g. window_s=30, "
            "context_s=5)."
        )
    if num_samples <= window:
        yield Window(0, num_samples, 0, num_samples)
        return
    start, keep_start = 0, 0
    while True:
        if start + window >= num_samples:  # the last window: a full one ending at the audio's end
            last_start = min(start, math.ceil((num_samples - window) / frame) * frame)
            yield Window(last_start, num_samples, keep_start, num_samples)
            return
        keep_end = start + window - context
        yield Window(start, start + window, keep_start, keep_end)
        start, keep_start = start + step, keep_end


def keep_frames(
    logits: Any, window: Window, samples_per_frame: int = DEFAULT_SAMPLES_PER_FRAME
) -> Any:
    """The frames of one window's ``(T, V)`` logits that cover its kept region.

    Works on a torch tensor or a numpy array (returns the same kind, a view). The last window keeps
    every frame to its end, so the concatenation has as many frames as the unchunked pass.
    """
    if not isinstance(logits, (torch.Tensor, np.ndarray)) or logits.ndim != 2:
        raise ConfigError(
            "keep_frames expects one window's logits of shape (frames, vocab); found "
            f"{type(logits).__name__} of shape {tuple(getattr(logits, 'shape', ()))}."
        )
    first = (window.keep_start - window.start) // samples_per_frame
    if window.is_last:
        return logits[first:]
    last = (window.keep_end - window.start) // samples_per_frame
    return logits[first:last]
