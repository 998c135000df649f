"""Random access to (long) audio without holding it all: the input side of long-form work.

A 16 kHz file that soundfile can read is never loaded whole: each window is read with a seek.
Anything else (bytes, file objects, other sample rates, formats only ffmpeg decodes) is decoded
once into memory, which costs the audio itself and nothing more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from mmspeech.api.options import SAMPLE_RATE
from mmspeech.audio import load_audio
from mmspeech.errors import AudioError


@dataclass
class AudioSource:
    """Audio at 16 kHz that can be read piece by piece.

    Attributes:
        name: what error messages call the input (the path, or "the audio array").
        num_samples: length in samples at 16 kHz.
    """

    name: str
    num_samples: int
    _path: Path | None = None
    _array: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return self.num_samples / SAMPLE_RATE

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` as a ``(end - start,)`` float32 array (clipped to the audio)."""
        start, end = max(0, start), min(end, self.num_samples)
        if self._array is not None:
            return self._array[start:end]
        assert self._path is not None
        with soundfile.SoundFile(self._path) as handle:
            handle.seek(start)
            block = handle.read(end - start, dtype="float32", always_2d=True)
        waveform = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        if not np.isfinite(waveform).all():
            raise AudioError(
                f"{self.name} contains NaN or infinite samples between {start / SAMPLE_RATE:.2f} s "
                f"and {end / SAMPLE_RATE:.2f} s; the file is corrupt."
            )
        return np.ascontiguousarray(waveform)

    def load(self) -> np.ndarray:
        """All of it, as a ``(samples,)`` float32 array."""
        return self.read(0, self.num_samples)


def open_audio(audio: Any) -> AudioSource:
    """Wrap a path, bytes, binary file object or 1-D float array at 16 kHz as an AudioSource.

    Raises:
        AudioError: missing, empty or undecodable audio.
    """
    if isinstance(audio, AudioSource):
        return audio
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio).expanduser()
        try:
            info = soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError, OSError):
            info = None  # not there, or a format for ffmpeg: load_audio explains or decodes
        if info is not None and info.samplerate == SAMPLE_RATE and info.frames > 0:
            return AudioSource(str(path), int(info.frames), _path=path)
        name = str(path)
    elif isinstance(audio, np.ndarray) or hasattr(audio, "detach"):
        name = "the audio array"
    else:
        name = "the audio bytes"
    waveform = load_audio(audio, SAMPLE_RATE)
    return AudioSource(name, len(waveform), _array=waveform)
