"""Voice-activity regions with silero-vad (``pip install mmspeech[vad]``), streamed block by block.

The silero model scores 32 ms chunks (512 samples at 16 kHz) and keeps its own state between
calls, so the audio is read a block at a time and regions are yielded as soon as they end.
Hysteresis as in silero's own helper: speech starts at ``threshold`` and ends after
``min_silence_s`` below ``threshold - 0.15``.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from mmspeech.api.options import SAMPLE_RATE, TranscribeOptions
from mmspeech.api.source import AudioSource
from mmspeech.errors import MissingDependencyError

logger = logging.getLogger(__name__)

CHUNK = 512  # samples per silero decision at 16 kHz
BLOCK = CHUNK * 1875  # 60 s read at a time
MIN_SPEECH_S = 0.25  # shorter bursts are not speech


@functools.lru_cache(maxsize=1)
def load_vad() -> Any:
    """The silero-vad TorchScript model that ships in its wheel (no download)."""
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ImportError as exc:
        raise MissingDependencyError(
            "Voice-activity splitting (vad=True, --vad) needs silero-vad: "
            "pip install 'mmspeech[vad]' (or pip install silero-vad)."
        ) from exc
    finally:
        torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread
    with warnings.catch_warnings():  # its loader's own deprecation warnings are not the user's
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad()


def speech_regions(source: AudioSource, options: TranscribeOptions) -> Iterator[tuple[int, int]]:
    """``(start, end)`` sample ranges of speech, padded by ``speech_pad_s``, in order."""
    model = load_vad()
    model.reset_states()
    on, off = options.vad_threshold, max(0.01, options.vad_threshold - 0.15)
    min_silence = int(options.min_silence_s * SAMPLE_RATE)
    pad = int(options.speech_pad_s * SAMPLE_RATE)
    start: int | None = None
    silence_from: int | None = None
    last_end = 0
    for block_start in range(0, source.num_samples, BLOCK):
        block = torch.from_numpy(source.read(block_start, block_start + BLOCK).copy())
        for offset in range(0, len(block), CHUNK):
            chunk = block[offset : offset + CHUNK]
            if len(chunk) < CHUNK:
                chunk = torch.nn.functional.pad(chunk, (0, CHUNK - len(chunk)))
            with torch.inference_mode():
                probability = float(model(chunk, SAMPLE_RATE))
            position = block_start + offset
            if probability >= on:
                silence_from = None
                if start is None:
                    start = position
            elif probability < off and start is not None:
                silence_from = position if silence_from is None else silence_from
                if position + CHUNK - silence_from >= min_silence:
                    region = _padded(start, silence_from, last_end, pad, source.num_samples)
                    if region is not None:
                        last_end = region[1]
                        yield region
                    start = silence_from = None
    if start is not None:
        region = _padded(
            start, silence_from or source.num_samples, last_end, pad, source.num_samples
        )
        if region is not None:
            yield region


def _padded(start: int, end: int, last_end: int, pad: int, total: int) -> tuple[int, int] | None:
    if end - start < MIN_SPEECH_S * SAMPLE_RATE:
        return None
    return max(last_end, start - pad), min(total, end + pad)
