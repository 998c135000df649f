"""Response bodies: transcriptions in the OpenAI response formats, speech in audio formats.

Text, SRT and VTT come from :mod:`mmspeech.writers` (the CLI writes the same files);
``verbose_json`` follows the OpenAI shape (segments with the Whisper-only fields set to neutral
values, ``words`` when word timestamps were asked for). WAV, FLAC and raw PCM are encoded in
process; MP3 and Opus are encoded by PyAV, also in process (no ffmpeg program).
"""

from __future__ import annotations

import io
import struct
from typing import Any, Literal, get_args

import numpy as np
import soundfile

from mmspeech.errors import MissingDependencyError
from mmspeech.languages import language_name
from mmspeech.results import Transcription
from mmspeech.writers import format_transcription

# the response formats, once: the endpoints' parameter types and the lists derived from them
TranscriptFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
AudioFormat = Literal["wav", "flac", "pcm", "mp3", "opus"]
TRANSCRIPT_FORMATS: tuple[str, ...] = get_args(TranscriptFormat)
AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)
AUDIO_MEDIA_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
}
_AV_FORMATS = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus")}  # container, codec


def transcript_body(
    t: Transcription, fmt: str, words: bool, task: str = "transcribe"
) -> tuple[str | dict[str, Any], str]:
    """The body of a transcription response and its media type (a dict is sent as JSON)."""
    if fmt == "json":
        return {"text": t.text}, "application/json"
    if fmt == "text":
        return format_transcription(t, "txt"), "text/plain; charset=utf-8"
    if fmt in ("srt", "vtt"):
        media = "text/vtt; charset=utf-8" if fmt == "vtt" else "application/x-subrip"
        return format_transcription(t, fmt), media
    return verbose_json(t, words, task), "application/json"


def verbose_json(t: Transcription, words: bool, task: str = "transcribe") -> dict[str, Any]:
    """The OpenAI ``verbose_json`` shape, plus our ``language_code``/``language_probability``."""
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(t.language).lower() if t.language else "unknown",
        "language_code": t.language,
        "language_probability": t.language_probability,
        "duration": t.duration,
        "text": t.text,
        "segments": [
            {
                "id": segment.id,
                "seek": 0,
                "start": segment.start,
                "end": segment.end,
                "text": segment.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": segment.avg_logprob,
                "compression_ratio": segment.compression_ratio,
                "no_speech_prob": segment.no_speech_prob,
            }
            for segment in t.segments
        ],
        "language_detection": None if t.detection is None else t.detection.to_dict(),
        "warnings": list(t.warnings),
    }
    if words:
        body["words"] = [
            {"word": w.text, "start": w.start, "end": w.end, "probability": w.probability}
            for segment in t.segments
            for w in segment.words
        ]
    return body


def pcm16(waveform: np.ndarray) -> bytes:
    """Mono float samples as 16-bit little-endian PCM."""
    clipped = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int = 0xFFFFFFFF - 36) -> bytes:
    """A 16-bit mono WAV header; the default size marks a stream of unknown length."""
    return (
        b"RIFF"
        + struct.pack("<I", min(data_bytes + 36, 0xFFFFFFFF))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def encode_audio(waveform: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A whole waveform as the bytes of a ``fmt`` file (one of :data:`AUDIO_FORMATS`).

    Raises:
        MissingDependencyError: mp3/opus without PyAV.
    """
    if fmt == "pcm":
        return pcm16(waveform)
    if fmt == "wav":
        data = pcm16(waveform)
        return wav_header(sample_rate, len(data)) + data
    if fmt == "flac":
        buffer = io.BytesIO()
        soundfile.write(buffer, np.asarray(waveform, np.float32), sample_rate, format="FLAC")
        return buffer.getvalue()
    return _encode_with_av(waveform, sample_rate, fmt)


def _encode_with_av(waveform: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """MP3 (LAME) or Opus in Ogg, encoded in process by PyAV."""
    try:
        import av
    except ImportError:
        raise MissingDependencyError(
            f"response_format={fmt!r} needs PyAV, which this server does not have; ask for wav, "
            "flac or pcm, or install it on the server (`pip install av`)."
        ) from None
    container_format, codec = _AV_FORMATS[fmt]
    rate = 48000 if fmt == "opus" else sample_rate  # Opus encodes at 8/12/16/24/48 kHz
    samples = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
    frame.sample_rate, frame.pts = sample_rate, 0
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        context = stream.codec_context
        convert = av.AudioResampler(
            format=context.format, layout="mono", rate=rate, frame_size=context.frame_size
        )
        for converted in [*convert.resample(frame), *convert.resample(None)]:
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))
    return buffer.getvalue()
