"""Random access to (long) audio without holding it all: the input side of long-form work.

A WAV or FLAC file (formats whose seeks are exact) is never loaded whole: each window is read
with a seek, and a file at another rate than 16 kHz is resampled piece by piece. Each piece
starts on a sample where the two rates' sample grids meet and reaches 50 ms past the wanted
samples on either side, so the resampler's edges fall outside them: the samples equal those of
resampling the whole file (to ~1e-7). Anything else (bytes, file objects, MP3, Ogg, formats only
PyAV decodes) is decoded once into memory, which costs the audio itself at 16 kHz.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from mmspeech.api.options import SAMPLE_RATE
from mmspeech.audio import load_audio, resample, to_mono
from mmspeech.errors import AudioError

_MARGIN = SAMPLE_RATE // 20  # 50 ms on each side of a resampled piece
# formats whose seeks land on the exact sample; MP3 and Ogg (Vorbis) seeks in libsndfile 1.2 are
# off by up to a frame (measured: samples differ by 0.3-0.6 from a whole decode)
SEEKABLE = {"WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "AU", "CAF"}


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
    _rate: int = SAMPLE_RATE  # of the file at _path

    @property
    def duration(self) -> float:
        return self.num_samples / SAMPLE_RATE

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` as a ``(end - start,)`` float32 array (clipped to the audio)."""
        start, end = max(0, start), min(end, self.num_samples)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        if self._array is not None:
            return self._array[start:end]
        if self._rate == SAMPLE_RATE:
            return self._read_file(start, end)
        # whole blocks of ``step_in`` file samples ↔ ``step_out`` samples at 16 kHz, with margin
        common = math.gcd(self._rate, SAMPLE_RATE)
        step_in, step_out = self._rate // common, SAMPLE_RATE // common
        first = max(0, start - _MARGIN) // step_out
        last = -(-(end + _MARGIN) // step_out)
        waveform = resample(self._read_file(first * step_in, last * step_in), self._rate,
                            SAMPLE_RATE)  # fmt: skip
        offset = first * step_out
        return waveform[start - offset : end - offset]

    def _read_file(self, start: int, end: int) -> np.ndarray:
        """File samples ``[start, end)`` (clipped to the file), mono float32, checked."""
        assert self._path is not None
        with soundfile.SoundFile(self._path) as handle:
            start = min(start, handle.frames)
            handle.seek(start)
            block = handle.read(max(0, end - start), dtype="float32", always_2d=True)
        waveform = to_mono(block, channel_axis=1)
        if not np.isfinite(waveform).all():
            raise AudioError(
                f"{self.name} contains NaN or infinite samples between {start / self._rate:.2f} s "
                f"and {end / self._rate:.2f} s; the file is corrupt."
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
        if path.is_file() and not os.access(path, os.R_OK):  # say so, not "is it audio?"
            raise AudioError(f"{path} cannot be read: permission denied.")
        try:
            info = soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError, OSError):
            info = None  # not there, or a format for PyAV: load_audio explains or decodes
        seekable = info is not None and info.format in SEEKABLE
        if seekable and info.samplerate > 0 and info.frames > 0:
            # as many samples as resampling the whole file gives: frames × 16 kHz / rate, rounded
            samples = (2 * info.frames * SAMPLE_RATE + info.samplerate) // (2 * info.samplerate)
            if samples > 0:
                return AudioSource(str(path), samples, _path=path, _rate=info.samplerate)
        name = str(path)
    elif isinstance(audio, np.ndarray) or hasattr(audio, "detach"):
        name = "the audio array"
    else:
        name = "the audio bytes"
    waveform = load_audio(audio, SAMPLE_RATE)
    return AudioSource(name, len(waveform), _array=waveform)
