"""Load audio from files, bytes or arrays as a mono float32 waveform at the rate a model expects.

WAV, FLAC, OGG and MP3 are decoded by soundfile (libsndfile). Anything else (m4a, webm, mp4, …)
goes through the ``ffmpeg`` program when it is on PATH. Resampling uses soxr.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile
import soxr
import torch

from mmspeech.errors import AudioError, MissingDependencyError

logger = logging.getLogger(__name__)

AudioSource = str | os.PathLike[str] | bytes | bytearray | IO[bytes] | np.ndarray | torch.Tensor

RESAMPLE_QUALITY = "HQ"  # soxr "high quality"; "VHQ" is slower and indistinguishable for speech


def load_audio(
    source: AudioSource, sample_rate: int = 16000, *, source_sample_rate: int | None = None
) -> np.ndarray:
    """Load audio as a mono float32 waveform at ``sample_rate``.

    Args:
        source: a path, the bytes of an audio file, a binary file object, or a waveform as a numpy
            array / torch tensor: 1-D ``(samples,)`` or 2-D ``(channels, samples)`` or
            ``(samples, channels)`` (the smaller axis is taken as channels). Integer PCM arrays
            are scaled to [-1, 1].
        sample_rate: the rate of the returned waveform, in Hz.
        source_sample_rate: the rate of an array ``source``; None means it is already at
            ``sample_rate``. Ignored for files, whose header gives the rate.

    Returns:
        ``(samples,)`` float32 array.

    Raises:
        AudioError: missing or empty file, undecodable data, NaN/inf samples, bad sample rate.
        MissingDependencyError: soundfile cannot decode the data and ffmpeg is not installed.
    """
    _check_rate(sample_rate, "sample_rate")
    if isinstance(source, (np.ndarray, torch.Tensor)):
        rate = sample_rate if source_sample_rate is None else source_sample_rate
        _check_rate(rate, "source_sample_rate")
        waveform = to_mono(_pcm_to_float(_to_numpy(source)))
        _check_samples(waveform, "the input array")
        return resample(waveform, rate, sample_rate)

    encoded, name = _open_source(source)
    try:
        readable = io.BytesIO(encoded) if isinstance(encoded, bytes) else encoded
        decoded, rate = soundfile.read(readable, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as exc:
        logger.debug("soundfile cannot decode %s (%s); trying ffmpeg", name, exc)
        waveform = _decode_with_ffmpeg(encoded, name, sample_rate, soundfile_error=str(exc))
        _check_samples(waveform, name)
        return waveform
    waveform = to_mono(decoded, channel_axis=1)  # soundfile gives (frames, channels)
    _check_samples(waveform, name)
    return resample(waveform, rate, sample_rate)


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono ``(samples,)`` waveform from ``orig_sr`` to ``target_sr`` Hz (float32)."""
    _check_rate(orig_sr, "orig_sr")
    _check_rate(target_sr, "target_sr")
    waveform = np.asarray(waveform, dtype=np.float32)
    if orig_sr == target_sr:
        return waveform
    logger.debug("resampling %d samples from %d Hz to %d Hz", waveform.size, orig_sr, target_sr)
    resampled = soxr.resample(waveform, orig_sr, target_sr, quality=RESAMPLE_QUALITY)
    return np.asarray(resampled, dtype=np.float32)


def to_mono(waveform: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
    """Average the channels of a 1-D or 2-D waveform into a ``(samples,)`` float32 array.

    Args:
        waveform: ``(samples,)``, ``(channels, samples)`` or ``(samples, channels)``.
        channel_axis: which axis holds the channels; None guesses the smaller one.
    """
    waveform = np.asarray(waveform)
    if waveform.ndim == 1:
        return waveform.astype(np.float32, copy=False)
    if waveform.ndim != 2:
        raise AudioError(
            f"Expected a 1-D (samples,) or 2-D (channels, samples) waveform, got shape "
            f"{waveform.shape}."
        )
    if channel_axis is None:
        channel_axis = 0 if waveform.shape[0] <= waveform.shape[1] else 1
    if waveform.shape[channel_axis] == 1:  # already mono: no float64 pass over the samples
        return waveform.take(0, axis=channel_axis).astype(np.float32, copy=False)
    return waveform.mean(axis=channel_axis, dtype=np.float64).astype(np.float32)


# -- helpers ------------------------------------------------------------------------------------


def _check_rate(rate: Any, name: str) -> None:
    valid = (
        isinstance(rate, (int, float, np.integer, np.floating))
        and not isinstance(rate, bool)
        and math.isfinite(rate)
        and rate > 0
        and int(rate) == rate
    )
    if not valid:
        raise AudioError(
            f"{name} must be a positive whole number of Hz (e.g. 16000), got {rate!r}."
        )


def _to_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype == torch.bfloat16:
            array = array.float()
        return array.numpy()
    return array


def _pcm_to_float(array: np.ndarray) -> np.ndarray:
    """Integer PCM to float32 in [-1, 1]; floating arrays are only cast."""
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        half_range = 2.0 ** (info.bits - 1)
        offset = 0.0 if info.min < 0 else half_range  # unsigned PCM (uint8) is centred on 128
        return ((array.astype(np.float64) - offset) / half_range).astype(np.float32)
    raise AudioError(f"Expected an integer or floating-point waveform, got dtype {array.dtype}.")


def _check_samples(waveform: np.ndarray, name: str) -> None:
    if waveform.size == 0:
        raise AudioError(f"{name} contains no audio samples.")
    if not np.isfinite(waveform).all():
        bad = int((~np.isfinite(waveform)).sum())
        raise AudioError(
            f"{name} contains {bad} NaN or infinite sample(s) out of {waveform.size}; "
            "the audio is corrupt or was produced by a computation that overflowed."
        )


def _open_source(source: Any) -> tuple[Path | bytes, str]:
    """The checked path of a file, or the bytes of a bytes/file object; and a name for messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the audio bytes"
    elif hasattr(source, "read"):
        data, name = source.read(), f"audio file object {getattr(source, 'name', '')}".rstrip()
        if not isinstance(data, bytes):
            raise AudioError(
                f"{name} returned {type(data).__name__}; open the file in binary mode."
            )
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        name = str(path)
        if not path.exists():
            raise AudioError(f"Audio file not found: {name}")
        if not path.is_file():
            raise AudioError(f"{name} is not a file; expected an audio file.")
        if path.stat().st_size == 0:
            raise AudioError(f"{name} is empty (0 bytes).")
        return path, name
    else:
        raise AudioError(
            f"Cannot load audio from a {type(source).__name__}; pass a path, bytes, a binary file "
            "object, or a numpy array / torch tensor."
        )
    if not data:
        raise AudioError(f"{name} is empty (0 bytes).")
    return data, name


def _decode_with_ffmpeg(
    encoded: Path | bytes, name: str, sample_rate: int, soundfile_error: str
) -> np.ndarray:
    """Decode a file (or bytes) with the ffmpeg program to mono float32 at ``sample_rate``."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MissingDependencyError(
            f"soundfile cannot decode {name} ({soundfile_error}). Formats other than WAV, FLAC, "
            "OGG and MP3 (e.g. m4a, webm, mp4) need the ffmpeg program, which is not on PATH: "
            "install ffmpeg (`apt-get install ffmpeg`, `brew install ffmpeg` or "
            "`conda install -c conda-forge ffmpeg`) and try again."
        )
    # Bytes go through a temporary file, not stdin: containers such as mp4 need seeking.
    with tempfile.TemporaryDirectory(prefix="mmspeech-audio-") as tmp:
        input_path = encoded if isinstance(encoded, Path) else Path(tmp) / "input"
        if isinstance(encoded, bytes):
            input_path.write_bytes(encoded)
        command = [
            ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
            "-i", str(input_path),
            # rematrix_maxval 1: the mixdown averages the channels, as for soundfile-decoded audio
            # (for float output ffmpeg would otherwise sum a stereo pair scaled by 1/sqrt(2)).
            "-rematrix_maxval", "1.0", "-ac", "1", "-ar", str(int(sample_rate)),
            "-f", "f32le", "-acodec", "pcm_f32le",
            "-",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip() or f"exit code {result.returncode}"
        raise AudioError(
            f"Cannot decode {name}: soundfile failed ({soundfile_error}) and ffmpeg failed "
            f"({reason}). Is it an audio file?"
        )
    return np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)


# -- writing ------------------------------------------------------------------------------------

SAVE_SUBTYPES = ("PCM_16", "FLOAT")  # 16-bit integer PCM (clipped to [-1, 1]) or 32-bit float
MAX_CHANNELS = 64  # a larger first axis is almost certainly (samples, channels) by mistake


def save_audio(
    destination: str | os.PathLike[str] | IO[bytes],
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    subtype: str = "PCM_16",
    format: str | None = None,
) -> None:
    """Write a waveform as an audio file (WAV unless the file name or ``format`` says otherwise).

    Args:
        destination: a path, or a binary file object opened for writing.
        waveform: float samples in [-1, 1]: ``(samples,)`` mono or ``(channels, samples)``.
        sample_rate: in Hz (e.g. ``model.config.sampling_rate``).
        subtype: ``"PCM_16"`` (16-bit integers ``round(x * 32767)``, after clipping to [-1, 1]) or
            ``"FLOAT"`` (32-bit float, written as is).
        format: a soundfile container name such as ``"WAV"`` or ``"FLAC"``; None takes it from
            the path's extension, and means WAV for file objects and extension-less paths.

    Raises:
        AudioError: an unknown subtype or format, a bad rate or shape, no samples, NaN/inf
            samples, or a destination that cannot be written.
    """
    _check_rate(sample_rate, "sample_rate")
    if subtype not in SAVE_SUBTYPES:
        raise AudioError(
            f"subtype must be one of {', '.join(SAVE_SUBTYPES)}, got {subtype!r}: use PCM_16 "
            "for 16-bit WAV or FLOAT for 32-bit float WAV."
        )
    samples = np.asarray(_to_numpy(waveform))
    if not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(
            f"Expected a floating-point waveform in [-1, 1], got dtype {samples.dtype}; "
            "convert integer PCM with load_audio or divide by its full-scale value."
        )
    if samples.ndim not in (1, 2) or (samples.ndim == 2 and samples.shape[0] > MAX_CHANNELS):
        raise AudioError(
            f"Expected a (samples,) or (channels, samples) waveform with at most {MAX_CHANNELS} "
            f"channels, got shape {samples.shape}; transpose a (samples, channels) array."
        )
    _check_samples(samples, "the waveform to save")
    samples = samples.astype(np.float32, copy=False)
    if subtype == "PCM_16":  # converted here, so rounding and clipping are ours, not libsndfile's
        samples = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    frames = samples if samples.ndim == 1 else samples.T  # soundfile wants (frames, channels)
    target: Path | IO[bytes]
    if isinstance(destination, (str, os.PathLike)):
        target = Path(destination).expanduser()
        if not target.parent.is_dir():
            raise AudioError(
                f"Cannot write {target}: the directory {target.parent} does not exist."
            )
        format = format or (None if target.suffix else "WAV")
    else:
        target, format = destination, format or "WAV"
    if format is not None and format.upper() not in soundfile.available_formats():
        raise AudioError(
            f"Unknown audio format {format!r}; expected one of "
            f"{', '.join(sorted(soundfile.available_formats()))} (e.g. 'WAV')."
        )
    try:
        soundfile.write(target, frames, int(sample_rate), subtype=subtype, format=format)
    except (soundfile.SoundFileError, TypeError, ValueError) as exc:
        raise AudioError(
            f"Cannot write the waveform as {format or 'audio'} {subtype} to {destination!r}: "
            f"{exc}. Use a .wav path (or format='WAV') and a writable destination."
        ) from exc
