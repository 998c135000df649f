"""From an uploaded file to the waveform a model takes, within the server's limits.

The upload is read up to the size limit, then decoded as a job of the bounded scheduler (so at
most ``workers`` decodes run at once), with the duration limit checked from the file's header
before decoding and enforced while decoding. Errors name the file the client sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from fastapi import UploadFile

from mmspeech.api.options import SAMPLE_RATE
from mmspeech.audio import load_audio
from mmspeech.errors import AudioError, AudioTooLongError, MissingDependencyError
from mmspeech.server.errors import APIError

if TYPE_CHECKING:
    from mmspeech.server.app import ServerState

_AUDIO_TYPES = ("audio/", "video/", "application/octet-stream", "application/ogg")


async def upload_waveform(state: ServerState, upload: UploadFile) -> np.ndarray:
    """The uploaded audio as 16 kHz mono float32, within the size and duration limits."""
    settings = state.settings
    content_type = (upload.content_type or "").lower()
    if content_type and not content_type.startswith(_AUDIO_TYPES):
        raise APIError(
            415,
            f"The file {upload.filename!r} was sent as {content_type}; expected audio (wav, flac, "
            "ogg, mp3, webm, m4a, …).",
            "unsupported_media_type",
            "file",
        )
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise APIError(
            413,
            f"The file is larger than this server's {settings.max_upload_bytes / 1e6:.1f} MB "
            "limit; send a shorter or compressed file.",
            "file_too_large",
            "file",
        )
    if not data:
        raise APIError(
            400,
            "The uploaded file is empty (0 bytes); send an audio file.",
            "invalid_audio",
            "file",
        )
    limit = settings.max_audio_seconds
    name = _upload_name(upload)
    # decoded as a job of the bounded scheduler: at most `workers` decodes at once, each costing
    # no more than the limit at 16 kHz whatever the file declares
    return await state.scheduler.submit(
        lambda payloads: [_decode(payload, name, limit) for payload in payloads],
        data,
        None,
        settings.request_timeout,
        work="decode",
    )


def _upload_name(upload: UploadFile) -> str:
    """How messages call an upload: by the file name the client sent (quoted, shortened)."""
    filename = (upload.filename or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return f"the uploaded file {filename[:100]!r}" if filename else "the uploaded file"


def _decode(data: bytes, name: str, max_seconds: float) -> np.ndarray:
    """16 kHz mono float32 of an upload, or a 4xx naming what the client sent."""
    try:
        return load_audio(data, SAMPLE_RATE, max_seconds=max_seconds)
    except AudioTooLongError as error:
        lasts = f"{error.seconds:.1f} s" if error.seconds is not None else f"over {max_seconds:g} s"
        raise APIError(
            413,
            f"The audio lasts {lasts}; this server accepts at most {max_seconds:g} s per "
            "request. Split the file or use `mmspeech transcribe` locally.",
            "audio_too_long",
            "file",
        ) from None
    except AudioError as error:
        message = str(error).replace("the audio bytes", name, 1)
        raise APIError(400, f"Invalid audio: {message}", "invalid_audio", "file") from None
    except MissingDependencyError:
        raise APIError(
            415,
            f"{name[0].upper()}{name[1:]} is not WAV, FLAC, OGG or MP3, and this server cannot "
            "decode other formats; send one of those.",
            "unsupported_media_type",
            "file",
        ) from None
