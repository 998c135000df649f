"""The audio endpoints: transcriptions, translations, speech (OpenAI shapes) and language ID.

Each endpoint checks its input (limits, model name, language), loads the model in a thread if it
is not loaded yet, and hands inference to the scheduler; nothing heavy runs on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from mmspeech.api.transcript import flag_short_clip
from mmspeech.errors import (
    LanguageError,
    MmspeechError,
)
from mmspeech.languages import language_name, resolve_language
from mmspeech.results import LanguageScores, Transcription
from mmspeech.server.errors import APIError, error_body, from_library_error
from mmspeech.server.formats import (
    AUDIO_MEDIA_TYPES,
    AudioFormat,
    TranscriptFormat,
    encode_audio,
    pcm16,
    transcript_body,
    verbose_json,
    wav_header,
)
from mmspeech.server.registry import ALIASES
from mmspeech.server.uploads import upload_waveform

if TYPE_CHECKING:
    from mmspeech.api.asr import ASRModel
    from mmspeech.api.lid import LIDModel
    from mmspeech.api.speech2text import Speech2TextModel
    from mmspeech.api.tts import TTSModel
    from mmspeech.results import Segment, Synthesis
    from mmspeech.server.app import ServerState

logger = logging.getLogger(__name__)

OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
)  # fmt: skip
_TRANSCRIPT_CONTENT: dict[str, Any] = {
    media: {} for media in ("application/json", "text/plain", "text/vtt", "application/x-subrip")
}

router = APIRouter()


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.mmspeech
    return state


async def _model(state: ServerState, name: str | None, kind: str) -> tuple[Any, str]:
    """The loaded model a request names (loaded in a thread if needed) and its name; callers
    declare the model's type (:class:`ASRModel` for ``"asr"``, …)."""
    entry = state.registry.resolve(name, kind)
    return await asyncio.to_thread(state.registry.get, entry), entry.name


def _locked(
    state: ServerState, name: str, call: Callable[[Any], Any]
) -> Callable[[list[Any]], list[Any]]:
    """A one-item job running ``call(payload)`` while holding the model's lock."""

    def run(payloads: list[Any]) -> list[Any]:
        with state.registry.lock(name), _model_errors(state, name):
            return [call(payload) for payload in payloads]

    return run


@contextmanager
def _model_errors(state: ServerState, name: str) -> Iterator[None]:
    """Library errors of a model's work as 4xx that call the model by its name, never by the
    checkpoint path the library knows it by."""
    try:
        yield
    except MmspeechError as error:
        api_error = from_library_error(error)
        entry = state.registry.find(name)
        if entry is not None and entry.ref != name:
            api_error.message = api_error.message.replace(entry.ref, f"the model {name!r}")
        raise api_error from None


async def _language(
    state: ServerState, asr: ASRModel, name: str, language: str | None, waveform: np.ndarray
) -> tuple[str | None, float | None, LanguageScores | None]:
    """The ASR language code: the one asked for, or the most probable one it supports (with
    the probability and the whole language-ID decision when it was detected).

    A checkpoint without adapters has one language: any ``language`` is accepted and ignored.
    """
    if not asr.languages:
        return None, None, None
    if language:
        try:
            return resolve_language(language, asr.languages), None, None
        except LanguageError as error:  # its hint names the CLI; HTTP clients have an endpoint
            message = str(error).replace(
                "List the supported codes with `mmspeech languages`.",
                f"GET /v1/models/{name}/languages lists them.",
            )
            raise APIError(400, message, "unsupported_language", "language") from None
    if state.registry.default("lid") is None:
        raise APIError(
            400,
            "No language given and this server has no language-identification model to detect "
            "it; pass language= (e.g. 'en', 'fra').",
            "language_required",
            "language",
        )
    lid: LIDModel
    lid, lid_name = await _model(state, None, "lid")
    scores = await state.scheduler.submit(
        _locked(state, lid_name, lambda audio: asr.detect_language(audio, lid=lid)),
        waveform,
        None,
        state.settings.request_timeout,
    )
    return scores.language, scores.probability, flag_short_clip(scores, len(waveform) / 16_000)


def _length_bucket(samples: int) -> int:
    """Half-octave duration class: requests batched together differ in length by < 1.42x, so
    padding (and attention over it) wastes little."""
    return int(2 * np.log2(max(samples, 1)))


def _transcribe_batch(
    state: ServerState,
    asr: ASRModel,
    name: str,
    language: str | None,
    words: bool,
    waveforms: list[np.ndarray],
) -> list[Transcription]:
    with state.registry.lock(name), _model_errors(state, name):
        if len(waveforms) == 1:
            return [asr.transcribe(waveforms[0], language=language, word_timestamps=words)]
        return list(asr.transcribe_batch(waveforms, language=language, word_timestamps=words))


def _respond(body: str | dict[str, Any], media_type: str) -> Response:
    if isinstance(body, dict):
        return JSONResponse(body, media_type=media_type)
    return Response(body, media_type=media_type)


@router.post(
    "/v1/audio/transcriptions",
    tags=["audio"],
    responses={200: {"content": {**_TRANSCRIPT_CONTENT, "text/event-stream": {}}}},
)
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="Audio: wav, flac, ogg, mp3, webm, m4a, …")],
    model: Annotated[str, Form(max_length=200)] = "whisper-1",
    language: Annotated[str | None, Form(max_length=100)] = None,
    prompt: Annotated[str | None, Form(description="Accepted and ignored (CTC models).")] = None,
    response_format: Annotated[TranscriptFormat, Form()] = "json",
    temperature: Annotated[float, Form(description="Accepted and ignored.")] = 0.0,
    timestamp_granularities: Annotated[
        list[Literal["word", "segment"]] | None, Form(alias="timestamp_granularities[]")
    ] = None,
    stream: Annotated[bool, Form()] = False,
) -> Response:
    """Speech to text in the language given (ISO 639-1/-3 or a name) or the detected one."""
    state = _state(request)
    asr: ASRModel
    asr, name = await _model(state, model, "asr")
    waveform = await upload_waveform(state, file)
    code, probability, decision = await _language(state, asr, name, language, waveform)
    words = "word" in (timestamp_granularities or [])
    if stream:
        return await _stream_transcript(state, asr, name, code, probability, words, waveform)
    result: Transcription = await state.scheduler.submit(
        partial(_transcribe_batch, state, asr, name, code, words),
        waveform,
        ("asr", name, code, words, _length_bucket(len(waveform))),
        state.settings.request_timeout,
    )
    if decision is not None:  # Transcription is frozen: a copy with the language decision
        result = dataclasses.replace(
            result, language_probability=probability, detection=decision,
            warnings=(*decision.warnings, *result.warnings),
        )  # fmt: skip
    return _respond(*transcript_body(result, response_format, words))


async def _stream_transcript(
    state: ServerState,
    asr: ASRModel,
    name: str,
    code: str | None,
    probability: float | None,
    words: bool,
    waveform: np.ndarray,
) -> StreamingResponse:
    """Server-sent events: one ``transcript.text.delta`` per segment, then ``...done``."""

    def segments() -> Iterator[Segment]:
        with state.registry.lock(name), _model_errors(state, name):
            yield from asr.iter_segments(waveform, language=code, word_timestamps=words)

    stream = await state.scheduler.stream(segments, state.settings.request_timeout)
    try:  # the first segment before the headers: a failure or timeout is then a plain 4xx/504
        first = await stream.get()
    except BaseException:
        stream.close()
        raise
    if isinstance(first, Exception):
        raise _as_api_error(first)

    async def events() -> AsyncIterator[str]:
        texts = []
        item = first
        try:
            while item is not None:
                if isinstance(item, Exception):
                    raise item
                texts.append(item.text.strip())
                yield _sse(
                    {"type": "transcript.text.delta", "delta": item.text, "segment": item.to_dict()}
                )
                item = await stream.get()
        except Exception as failure:  # headers are sent: the error is the last event
            logger.error("transcription stream failed: %s", failure)
            error = _as_api_error(failure)
            yield _sse(
                {
                    "type": "error",
                    **error_body(error.status, error.message, error.code, error.param),
                }
            )
            return
        finally:  # also when the client has gone (the response is cancelled): stop the job
            stream.close()
        text = " ".join(t for t in texts if t)
        yield _sse(
            {
                "type": "transcript.text.done",
                "text": text,
                "language": code,
                "language_probability": probability,
            }
        )

    return StreamingResponse(events(), media_type="text/event-stream")


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def _as_api_error(error: Exception) -> APIError:
    if isinstance(error, APIError):
        return error
    if isinstance(error, MmspeechError):
        return from_library_error(error)
    return APIError(500, "Internal server error; the server log has the details.", "server_error")


@router.post(
    "/v1/audio/translations", tags=["audio"], responses={200: {"content": _TRANSCRIPT_CONTENT}}
)
async def translations(
    request: Request,
    file: Annotated[UploadFile, File(description="Audio in the checkpoint's source language.")],
    model: Annotated[str, Form(max_length=200)] = "whisper-1",
    prompt: Annotated[str | None, Form(description="Accepted and ignored.")] = None,
    response_format: Annotated[TranscriptFormat, Form()] = "json",
    temperature: Annotated[float, Form(description="Accepted and ignored.")] = 0.0,
) -> Response:
    """Speech to text in the target language of a speech encoder-decoder checkpoint."""
    state = _state(request)
    translator: Speech2TextModel
    translator, name = await _model(state, model, "translation")
    waveform = await upload_waveform(state, file)
    result = await state.scheduler.submit(
        _locked(state, name, translator.translate), waveform, None, state.settings.request_timeout
    )
    if response_format == "verbose_json":
        return JSONResponse(verbose_json(result, False, task="translate"))
    return _respond(*transcript_body(result, response_format, False))


@router.post("/v1/audio/language", tags=["audio"])
async def language_id(
    request: Request,
    file: Annotated[UploadFile, File(description="Audio of speech in one language.")],
    model: Annotated[str | None, Form(max_length=200)] = None,
    top_k: Annotated[int, Form(ge=1, le=100)] = 5,
) -> dict[str, Any]:
    """The ``top_k`` most probable languages (ISO 639-3 codes, names, probabilities)."""
    state = _state(request)
    lid: LIDModel
    lid, name = await _model(state, model, "lid")
    waveform = await upload_waveform(state, file)
    scores = await state.scheduler.submit(
        _locked(state, name, lambda audio: lid.identify(audio, top_k=top_k)),
        waveform,
        None,
        state.settings.request_timeout,
    )
    return dict(flag_short_clip(scores, len(waveform) / 16_000).to_dict())


class SpeechRequest(BaseModel):
    """The OpenAI speech request; ``voice`` may also be a language or a TTS model name."""

    model_config = ConfigDict(extra="ignore")

    input: str = Field(description="Text to speak.")
    model: str = Field("tts-1", max_length=200, description="A TTS model name, or tts-1.")
    voice: str | None = Field(None, max_length=200, description="A TTS model name or language.")
    response_format: AudioFormat = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate (1 = normal).")
    instructions: str | None = Field(None, description="Accepted and ignored.")


def _tts_name(state: ServerState, body: SpeechRequest) -> str | None:
    """The TTS model a request means: its model, else its voice (a model or a language)."""
    registry = state.registry
    if body.model not in ALIASES:
        return body.model
    voice = body.voice
    if not voice or voice.lower() in OPENAI_VOICES:
        return None  # the default TTS model
    if registry.find(voice) is not None:
        return voice
    tts_names = [e.name for e in registry.entries() if e.kind == "tts"]
    candidates = {
        name.rsplit("-", 1)[-1]: name for name in tts_names if name.startswith("mms-tts-")
    }
    try:
        return candidates[resolve_language(voice, list(candidates))]
    except LanguageError as error:
        raise APIError(
            404,
            f"No text-to-speech model for voice {voice!r}: {error} Voices: "
            f"{', '.join(sorted(candidates)) or 'none'}, or a model name: {', '.join(tts_names)}.",
            "model_not_found",
            "voice",
        ) from None


@router.post(
    "/v1/audio/speech",
    tags=["audio"],
    responses={200: {"content": {media: {} for media in AUDIO_MEDIA_TYPES.values()}}},
)
async def speech(request: Request, body: SpeechRequest) -> Response:
    """Text to speech; pcm and wav are streamed sentence by sentence."""
    state = _state(request)
    text = body.input
    if len(text) > state.settings.max_text_chars:
        raise APIError(
            413,
            f"The input has {len(text)} characters; this server accepts at most "
            f"{state.settings.max_text_chars} per request. Split the text.",
            "input_too_long",
            "input",
        )
    if not text.strip():
        raise APIError(400, "The input is empty; send the text to speak.", "empty_text", "input")
    tts: TTSModel
    tts, name = await _model(state, _tts_name(state, body), "tts")
    fmt = body.response_format
    if fmt in ("wav", "pcm"):
        return await _stream_speech(state, tts, name, text, body.speed, fmt)
    synthesis = await state.scheduler.submit(
        _locked(state, name, lambda words: tts.synthesize(words, speaking_rate=body.speed)),
        text,
        None,
        state.settings.request_timeout,
    )
    audio = await asyncio.to_thread(encode_audio, synthesis.waveform, synthesis.sample_rate, fmt)
    return Response(audio, media_type=AUDIO_MEDIA_TYPES[fmt])


async def _stream_speech(
    state: ServerState, tts: TTSModel, name: str, text: str, speed: float, fmt: str
) -> StreamingResponse:
    def pieces() -> Iterator[Synthesis]:
        with state.registry.lock(name), _model_errors(state, name):
            yield from tts.iter_synthesize(text, speaking_rate=speed)

    stream = await state.scheduler.stream(pieces, state.settings.request_timeout)
    try:
        first = await stream.get()
    except BaseException:
        stream.close()
        raise
    if isinstance(first, Exception):
        raise _as_api_error(first)
    if first is None:
        raise APIError(400, "The input leaves nothing to speak.", "empty_text", "input")

    async def chunks() -> AsyncIterator[bytes]:
        try:
            if fmt == "wav":
                yield wav_header(first.sample_rate)
            yield pcm16(first.waveform)
            while (item := await stream.get()) is not None:
                if isinstance(item, Exception):  # headers are sent: end the stream early
                    logger.error("speech stream failed after its first sentence: %s", item)
                    return
                yield pcm16(item.waveform)
        except APIError as error:  # past the timeout: end the stream early
            logger.error("speech stream stopped: %s", error.message)
        finally:  # also when the client has gone (the response is cancelled): stop the job
            stream.close()

    headers = {"X-Sample-Rate": str(first.sample_rate)}
    return StreamingResponse(chunks(), media_type=AUDIO_MEDIA_TYPES[fmt], headers=headers)


@router.get("/v1/models/{name}/languages", tags=["models"])
async def model_languages(request: Request, name: str) -> dict[str, Any]:
    """The languages a model takes (ASR adapters, language-ID labels; a TTS model's one
    language), as ISO 639-3 codes with English names. Loads the model if it is not loaded."""
    state = _state(request)
    registry = state.registry
    entry = registry.find(name)
    if entry is None and name in ALIASES:
        entry = registry.resolve(name, ALIASES[name])
    if entry is None:
        entry = registry.resolve(name, "asr")  # the same 400/404 as a transcription request
    model = await asyncio.to_thread(registry.get, entry)
    if entry.kind in ("asr", "lid"):
        codes = list(model.languages)
    else:
        language = getattr(getattr(model, "tokenizer", None), "language", None)
        codes = [language] if isinstance(language, str) and language else []
    return {
        "model": entry.name,
        "task": entry.kind,
        # an ASR checkpoint without adapters has one vocabulary: it takes any language= value
        "languages": [{"code": code, "name": language_name(code)} for code in codes],
    }
