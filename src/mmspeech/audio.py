"""Load audio from files, bytes or arrays as a mono float32 waveform at the rate a model expects.

WAV, FLAC, OGG and MP3 are decoded by soundfile (libsndfile); anything else (m4a, webm, mp4, …)
by PyAV, in process (no ffmpeg program, no temporary files). Resampling uses soxr.

Encoded audio is checked from its header first (a sample rate between :data:`MIN_FILE_RATE` and
:data:`MAX_FILE_RATE`, at most :data:`MAX_CHANNELS` channels, and with ``max_seconds`` a declared
duration within it), then decoded block by block: each block is mixed down and resampled before
the next is read, and decoding stops as soon as the output passes ``max_seconds``. So a file that
declares (or really holds) more than it should costs at most the output at the target rate,
whatever its header says.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile
import soxr
import torch

from mmspeech.errors import AudioError, AudioTooLongError, MissingDependencyError

logger = logging.getLogger(__name__)

# file name suffixes taken as audio when a folder is searched (CLI, batch jobs, training data)
AUDIO_SUFFIXES = frozenset({
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".wma", ".webm", ".mp4",
    ".mkv", ".aif", ".aiff", ".au",
})  # fmt: skip

AudioSource = str | os.PathLike[str] | bytes | bytearray | IO[bytes] | np.ndarray | torch.Tensor

RESAMPLE_QUALITY = "HQ"  # soxr "high quality"; "VHQ" is slower and indistinguishable for speech
MIN_FILE_RATE = 4_000  # Hz; a file declaring less is corrupt or crafted (telephony is 8 kHz)
MAX_FILE_RATE = 768_000  # Hz; the highest rate audio interfaces record at
MAX_CHANNELS = 64  # more channels in a file (or a first axis of a saved array) is a mistake
_UNKNOWN_FRAMES = 2**62  # libsndfile's frame count for a stream of unknown length is ~2**63
_BLOCK_FRAMES = 65_536  # frames decoded per step: 16 MB of float32 at 64 channels


def load_audio(
    source: AudioSource,
    sample_rate: int = 16000,
    *,
    source_sample_rate: int | None = None,
    max_seconds: float | None = None,
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
        max_seconds: refuse encoded audio longer than this (from its header when it says, else
            once decoding passes it), before decoding more than that; None: no limit.

    Returns:
        ``(samples,)`` float32 array.

    Raises:
        AudioTooLongError: encoded audio longer than ``max_seconds``.
        AudioError: missing or empty file, undecodable data, NaN/inf samples, a bad sample rate
            or channel count.
        MissingDependencyError: soundfile cannot decode the data and PyAV is not installed.
    """
    _check_rate(sample_rate, "sample_rate")
    if isinstance(source, (np.ndarray, torch.Tensor)):
        rate = sample_rate if source_sample_rate is None else source_sample_rate
        _check_rate(rate, "source_sample_rate")
        waveform = to_mono(_pcm_to_float(_to_numpy(source)))
        _check_samples(waveform, "the input array")
        return resample(waveform, rate, sample_rate)

    encoded, name = _open_source(source)
    readable = io.BytesIO(encoded) if isinstance(encoded, bytes) else encoded
    try:
        handle = soundfile.SoundFile(readable)
    except (soundfile.SoundFileError, RuntimeError) as exc:
        logger.debug("soundfile cannot decode %s (%s); trying PyAV", name, exc)
        blocks = _av_blocks(encoded, name, max_seconds)
    else:
        blocks = _soundfile_blocks(handle, name, max_seconds)
    waveform = _mix_and_resample(blocks, sample_rate, name, max_seconds)
    _check_samples(waveform, name)
    return waveform


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
        if not os.access(path, os.R_OK):  # not "is it audio?": it cannot be read at all
            raise AudioError(f"{name} cannot be read: permission denied.")
        return path, name
    else:
        raise AudioError(
            f"Cannot load audio from a {type(source).__name__}; pass a path, bytes, a binary file "
            "object, or a numpy array / torch tensor."
        )
    if not data:
        raise AudioError(f"{name} is empty (0 bytes).")
    return data, name


def _check_header(
    name: str, rate: int, channels: int, seconds: float | None, max_seconds: float | None
) -> None:
    """Refuse what a header declares before anything is decoded."""
    if not MIN_FILE_RATE <= rate <= MAX_FILE_RATE:
        raise AudioError(
            f"{name} declares a sample rate of {rate} Hz; audio files are read at "
            f"{MIN_FILE_RATE}-{MAX_FILE_RATE} Hz. The file is corrupt or not audio."
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(
            f"{name} declares {channels} channels; at most {MAX_CHANNELS} are read. The file is "
            "corrupt or not a recording."
        )
    if max_seconds is not None and seconds is not None and seconds > max_seconds:
        raise AudioTooLongError(
            f"{name} lasts {seconds:.1f} s; at most {max_seconds:g} s are accepted.",
            seconds,
            max_seconds,
        )


def _soundfile_blocks(
    handle: soundfile.SoundFile, name: str, max_seconds: float | None
) -> Iterator[tuple[np.ndarray, int]]:
    """``((frames, channels) float32 block, rate)`` pairs of a file soundfile opened."""
    with handle:
        rate, channels, frames = handle.samplerate, handle.channels, handle.frames
        known = 0 < frames < _UNKNOWN_FRAMES and rate > 0
        _check_header(name, rate, channels, frames / rate if known else None, max_seconds)
        while True:
            try:
                block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            except (soundfile.SoundFileError, RuntimeError) as exc:
                logger.debug("soundfile failed reading %s: %s", name, exc)
                raise AudioError(
                    f"Cannot decode {name}: the data is corrupt or truncated."
                ) from None
            if len(block) == 0:
                return
            yield block, rate


def _av_blocks(
    encoded: Path | bytes, name: str, max_seconds: float | None
) -> Iterator[tuple[np.ndarray, int]]:
    """``((frames, channels) float32 block, rate)`` pairs decoded by PyAV (the first audio
    stream), or AudioError naming only ``name``."""
    try:
        import av
    except ImportError:
        raise MissingDependencyError(
            f"{name} is not WAV, FLAC, OGG or MP3 (which soundfile reads); other formats (m4a, "
            "webm, mp4, …) are decoded by PyAV, which is not installed: `pip install av`."
        ) from None
    undecodable = AudioError(
        f"Cannot decode {name}: it is not audio in a format this server or library reads (WAV, "
        "FLAC, OGG, MP3, m4a/AAC, webm/Opus, mp4, …), or it is truncated."
    )
    try:
        container = av.open(
            io.BytesIO(encoded) if isinstance(encoded, bytes) else str(encoded), mode="r"
        )
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        logger.debug("PyAV cannot open %s: %s", name, exc)
        raise undecodable from None
    with container:
        if not container.streams.audio:
            raise AudioError(f"{name} holds no audio stream (a video or data file?).")
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        seconds = None
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        _check_header(name, rate, channels, seconds, max_seconds)
        planar = av.AudioResampler(format="fltp")  # float32, the stream's own layout and rate
        try:
            for frame in container.decode(stream):
                for converted in planar.resample(frame):
                    if converted.sample_rate != rate:
                        raise AudioError(
                            f"{name} changes its sample rate mid-stream ({rate} -> "
                            f"{converted.sample_rate} Hz); re-encode it at one rate."
                        )
                    block = converted.to_ndarray()  # (channels, frames)
                    if len(block) > MAX_CHANNELS:
                        _check_header(name, rate, len(block), None, None)
                    yield block.T, rate
        except av.FFmpegError as exc:
            logger.debug("PyAV failed decoding %s: %s", name, exc)
            raise undecodable from None


def _mix_and_resample(
    blocks: Iterator[tuple[np.ndarray, int]], target: int, name: str, max_seconds: float | None
) -> np.ndarray:
    """Mix each block to mono and resample it as a stream: the output equals resampling the
    whole mono waveform at once, without ever holding it at the source rate."""
    limit = None if max_seconds is None else math.ceil(max_seconds * target) + target // 100
    pieces: list[np.ndarray] = []
    produced = 0
    stream: Any = None
    rate = target
    for block, rate in blocks:
        mono = to_mono(block, channel_axis=1)
        if stream is None and rate != target:
            stream = soxr.ResampleStream(rate, target, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        piece = mono if stream is None else stream.resample_chunk(mono, last=False)
        pieces.append(np.asarray(piece, dtype=np.float32))
        produced += len(piece)
        if limit is not None and produced > limit:
            assert max_seconds is not None
            raise AudioTooLongError(
                f"{name} lasts more than {max_seconds:g} s; at most {max_seconds:g} s are "
                "accepted.",
                None,
                max_seconds,
            )
    if stream is not None:
        pieces.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    if rate != target:
        logger.debug("resampled %s from %d Hz to %d Hz", name, rate, target)
    if not pieces:
        return np.zeros(0, np.float32)
    return np.concatenate(pieces).astype(np.float32, copy=False)


# -- writing ------------------------------------------------------------------------------------

SAVE_SUBTYPES = ("PCM_16", "FLOAT")  # 16-bit integer PCM (clipped to [-1, 1]) or 32-bit float


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
