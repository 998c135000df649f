"""``/v1/realtime?intent=transcription``: the OpenAI Realtime API's transcription session over a
WebSocket, a thin adapter over :meth:`mmspeech.api.asr.ASRModel.stream`.

Client events: ``session.update`` / ``transcription_session.update`` (``input_audio_format``
``pcm16``, 24 kHz mono little-endian; ``input_audio_transcription.model`` and ``.language``),
``input_audio_buffer.append`` (base64 ``audio``), ``input_audio_buffer.commit`` (end the current
speech now) and ``input_audio_buffer.clear`` (drop what was not transcribed yet). Server events:
``session.created``/``session.updated`` (or their ``transcription_session.*`` names),
``input_audio_buffer.speech_started``/``speech_stopped``/``committed``/``cleared``,
``conversation.item.input_audio_transcription.delta``/``completed`` (one item per segment) and
``error``; a malformed event gets an ``error`` and the session goes on.

The API key is the server's (``Authorization: Bearer`` or the browser subprotocol
``openai-insecure-api-key.<key>``); models come from the server's registry and run under its
per-model lock, in a thread. A session's audio is limited to ``max_audio_seconds``, live sessions
to ``max_queue`` at once. Each event is handled before the next is read, so a client sending
faster than real time is slowed by the socket itself (backpressure), and a client that drops
takes its stream and buffers with it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import itertools
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from mmspeech.api.streaming import Final, LanguageDecided, Partial
from mmspeech.errors import MmspeechError
from mmspeech.server.errors import APIError

router = APIRouter()
RATE = 24_000  # the protocol's pcm16 rate
_KEY_PROTOCOL = "openai-insecure-api-key."
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):012d}"


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    state = websocket.app.state.mmspeech
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    if not _authorised(websocket, protocols, state.settings.api_key):
        await websocket.close(code=1008, reason="missing or wrong API key")
        return
    if websocket.query_params.get("intent", "transcription") != "transcription":
        await websocket.close(code=1008, reason="only intent=transcription is served")
        return
    chosen = next((p for p in protocols if p == "realtime"), None)
    await websocket.accept(subprotocol=chosen)
    open_sessions = getattr(websocket.app.state, "realtime_sessions", 0)
    if open_sessions >= state.settings.max_queue:  # a live session holds inference like a job
        await Session(websocket, state).error(
            f"This server is at its {state.settings.max_queue} live sessions; retry later.",
            "too_many_sessions",
        )
        await websocket.close(code=1013)
        state.metrics.count("mmspeech_rejected_total", {"reason": "realtime_sessions"})
        return
    websocket.app.state.realtime_sessions = open_sessions + 1
    state.metrics.count(  # a session counts as one request to its endpoint (101: upgraded)
        "mmspeech_requests_total", {"endpoint": "/v1/realtime", "method": "GET", "status": "101"}
    )
    try:
        await Session(websocket, state).run()
    finally:
        websocket.app.state.realtime_sessions -= 1


def _authorised(websocket: WebSocket, protocols: list[str], key: str | None) -> bool:
    if not key:
        return True
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else ""
    given = given or next((p[len(_KEY_PROTOCOL) :] for p in protocols
                           if p.startswith(_KEY_PROTOCOL)), "")  # fmt: skip
    return hmac.compare_digest(given.encode(), key.encode())


class Session:
    """One transcription session: its settings, its stream and the item being spoken."""

    def __init__(self, websocket: WebSocket, state: Any):
        self.websocket = websocket
        self.state = state
        self.prefix = "session"  # or "transcription_session", as the client names it
        self.model: str | None = None
        self.language: str | None = None
        self.stream: Any = None
        self.asr: Any = None
        self.name = ""
        self.item: str | None = None  # the item of the speech in progress
        self.previous: str | None = None
        self.sent = ""  # text of the item sent as deltas so far
        self.offset_ms = 0.0  # where the current stream starts in the session's audio
        self.seconds = 0.0  # audio received in the session

    async def run(self) -> None:
        await self.send(f"{self.prefix}.created", session=self.description())
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    if message.get("text") is None:
                        raise APIError(400, "Send events as JSON text frames.", "invalid_event")
                    await self.handle(message["text"])
                except APIError as error:
                    await self.error(error.message, error.code or "invalid_request_error")
                except MmspeechError as exc:  # bad audio, a model that cannot load
                    await self.error(str(exc), "invalid_request_error")
        except WebSocketDisconnect:
            return  # the stream and its buffers go with this object

    async def handle(self, message: str) -> None:
        try:
            event = json.loads(message)
        except json.JSONDecodeError:
            raise APIError(400, "The event is not JSON.", "invalid_json") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise APIError(400, "An event is a JSON object with a string 'type'.", "invalid_event")
        kind = event["type"]
        if kind in ("session.update", "transcription_session.update"):
            self.prefix = kind.rsplit(".", 1)[0]
            self.configure(event.get("session"))
            await self.send(f"{self.prefix}.updated", session=self.description())
        elif kind == "input_audio_buffer.append":
            await self.append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            if self.stream is not None:
                await self.forward(await self.call(self.stream.finish))
                self.restart()
        elif kind == "input_audio_buffer.clear":
            self.restart()
            await self.send("input_audio_buffer.cleared")
        else:
            raise APIError(400, f"Unknown client event type {kind!r}.", "unknown_event")

    def configure(self, session: Any) -> None:
        if not isinstance(session, dict):
            raise APIError(400, "session.update needs a 'session' object.", "invalid_event")
        audio_format = session.get("input_audio_format", "pcm16")
        if audio_format != "pcm16":
            raise APIError(400, f"input_audio_format {audio_format!r} is not served; send "
                           "pcm16 (24 kHz mono, little-endian).", "unsupported_format")  # fmt: skip
        transcription = session.get("input_audio_transcription") or {}
        if not isinstance(transcription, dict):
            raise APIError(400, "input_audio_transcription must be an object.", "invalid_event")
        if self.stream is not None and (
            transcription.get("model", self.model) != self.model
            or transcription.get("language", self.language) != self.language
        ):
            raise APIError(400, "Change the model or language before sending audio (or after "
                           "input_audio_buffer.clear).", "session_in_use")  # fmt: skip
        self.model = transcription.get("model", self.model)
        self.language = transcription.get("language", self.language)

    def description(self) -> dict[str, Any]:
        return {
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": self.model, "language": self.language},
            "turn_detection": {"type": "server_vad"},
        }

    async def append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise APIError(400, "input_audio_buffer.append needs base64 'audio'.", "invalid_event")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, "'audio' is not valid base64.", "invalid_audio") from None
        self.seconds += len(data) / 2 / RATE
        if self.seconds > self.state.settings.max_audio_seconds:
            raise APIError(413, f"A session takes at most {self.state.settings.max_audio_seconds:g}"
                           " s of audio; open a new one.", "audio_too_long")  # fmt: skip
        if self.stream is None:
            await self.open()
        await self.forward(await self.call(self.stream.feed, data))

    async def open(self) -> None:
        entry = self.state.registry.resolve(self.model, "asr")
        self.asr = await asyncio.to_thread(self.state.registry.get, entry)
        self.name = entry.name

        def start() -> Any:
            return self.asr.stream(self.language, sample_rate=RATE, encoding="pcm16")

        try:
            self.stream = await self.call(start)
        except ValueError as exc:  # an unknown language: the client's to fix
            raise APIError(400, str(exc), "invalid_language", "language") from None

    async def call(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` in a thread, holding the model's lock (adapters are shared)."""

        def locked() -> Any:
            with self.state.registry.lock(self.name):
                return function(*args)

        return await asyncio.to_thread(locked)

    def restart(self) -> None:
        """A fresh stream for what comes next (same settings); times go on from here."""
        if self.stream is not None:
            self.offset_ms += self.stream.received_s * 1000
        self.stream = None
        self.item = None
        self.sent = ""

    async def forward(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, LanguageDecided):
                self.language = event.code
            elif isinstance(event, Partial):
                await self.started(event.start)
                if event.text.startswith(self.sent) and event.text != self.sent:
                    await self.send("conversation.item.input_audio_transcription.delta",
                                    item_id=self.item, content_index=0,
                                    delta=event.text[len(self.sent) :])  # fmt: skip
                    self.sent = event.text
            elif isinstance(event, Final):
                segment = event.segment
                await self.started(segment.start)
                end_ms = round(self.offset_ms + segment.end * 1000)
                await self.send("input_audio_buffer.speech_stopped", item_id=self.item,
                                audio_end_ms=end_ms)  # fmt: skip
                await self.send("input_audio_buffer.committed", item_id=self.item,
                                previous_item_id=self.previous)  # fmt: skip
                await self.send("conversation.item.input_audio_transcription.completed",
                                item_id=self.item, content_index=0,
                                transcript=segment.text)  # fmt: skip
                self.previous, self.item, self.sent = self.item, None, ""

    async def started(self, start_s: float) -> None:
        if self.item is None:
            self.item = _id("item")
            await self.send("input_audio_buffer.speech_started", item_id=self.item,
                            audio_start_ms=round(self.offset_ms + start_s * 1000))  # fmt: skip

    async def error(self, message: str, code: str) -> None:
        await self.send("error", error={"type": "invalid_request_error", "code": code,
                                        "message": message})  # fmt: skip

    async def send(self, kind: str, **fields: Any) -> None:
        await self.websocket.send_text(json.dumps({"event_id": _id("event"), "type": kind,
                                                   **fields}))  # fmt: skip
