"""``/v1/realtime?intent=transcription``: the OpenAI Realtime API's transcription session over a
WebSocket, a thin adapter over :meth:`mmspeech.api.asr.ASRModel.stream`.

Client events: ``session.update`` with a transcription session in the GA shape
(``session: {type: "transcription", audio: {input: {format: {type: "audio/pcm", rate: 24000},
transcription: {model, language}, turn_detection}}}``) or the beta one (``input_audio_format:
"pcm16"``, ``input_audio_transcription``, ``turn_detection``; also as
``transcription_session.update``); ``input_audio_buffer.append`` (base64 PCM16, 24 kHz mono,
little-endian), ``.commit`` and ``.clear``. Server events: ``session.created``/``.updated`` (or
``transcription_session.*``, in the shape the client used), ``input_audio_buffer.speech_started``/
``speech_stopped`` (server VAD only), ``committed``/``cleared``,
``conversation.item.input_audio_transcription.delta``/``completed`` and ``error``; a malformed
event gets an ``error`` and the session goes on.

Turns. ``turn_detection: {type: "server_vad"}`` (the default): every segment the stream closes
at a pause is one item; ``silence_duration_ms`` is the pause that ends it
(``TranscribeOptions.min_silence_s``), ``prefix_padding_ms`` moves ``audio_start_ms`` before
the first word, and ``threshold`` (0-1) is the no-speech decision: a segment whose
``no_speech_prob`` (blank mass) is above ``1 - threshold / 2`` is not speech (default 0.5: above
0.75; demo speech scores 0.43-0.69, white noise 0.83-0.89) and gives no text; an item it had
begun completes with an empty transcript. ``turn_detection: null``: only the client's ``commit``
ends an item, whose transcript is every segment since the last commit.

Deltas are append-only, as OpenAI's are: a delta carries the new *stable* text (every word but
the last one of the open segment, which may still grow or change); each delta event also has a
vendor object ``mmspeech: {text, tail}``: the item's whole current text and the revisable words
after the deltas so far. ``completed`` adds ``language`` (the adapter's code), ``usage``
(``duration``) and ``mmspeech: {start, end}`` (seconds of session audio). Vendor event
``mmspeech.language_detected`` (``language``, ``probability``) reports the language ID
decision when no language was given.

Limits: the server's API key (``Authorization: Bearer`` or the browser subprotocol
``openai-insecure-api-key.<key>``); at most ``max_queue`` sessions at once; a session lasts at
most ``max_session_seconds``, counting the longer of its time open and its audio (then an
``error`` ``session_expired`` and the socket closes); audio waiting to be transcribed is at most
``max_realtime_backlog_seconds``: an append beyond that is refused with ``audio_backlog_full``
(the audio is not kept: send it again later, or no faster than real time). Models come from the
server's registry and run under its per-model lock, in a thread; a client that drops takes its
stream and buffers with it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from mmspeech.api.options import TranscribeOptions
from mmspeech.api.streaming import Final, LanguageDecided, Partial
from mmspeech.errors import MmspeechError
from mmspeech.results import Segment
from mmspeech.server.errors import APIError
from mmspeech.server.realtime_config import RATE, SessionConfig

logger = logging.getLogger(__name__)
router = APIRouter()
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


class SessionExpired(Exception):
    """The session reached ``max_session_seconds``."""


class Session:
    """One transcription session: the receiver reads client events and queues audio; a worker
    task feeds the stream and sends what it decides, in order."""

    def __init__(self, websocket: WebSocket, state: Any):
        self.websocket = websocket
        self.state = state
        self.id = _id("sess")
        self.prefix = "session"  # or "transcription_session", as the client names its events
        self.config = SessionConfig()  # as the client last set it
        self.open_turn = False  # audio appended and no commit or clear queued after it
        self.detected: str | None = None  # the language ID decision, kept for later streams
        self.opened = time.monotonic()
        self.seconds = 0.0  # audio received in the session
        self.backlog_s = 0.0  # audio queued, not yet fed to the stream
        self.generation = 0  # bumped by clear: queued audio of older generations is dropped
        self.queue: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()
        self.sending = asyncio.Lock()
        # worker side
        self.running = self.config  # the configuration the stream was opened with
        self.unopenable: tuple[int, SessionConfig] | None = None  # no stream for these
        self.stream: Any = None
        self.asr: Any = None
        self.name = ""
        self.lid: Any = None
        self.lid_name = ""
        self.offset_s = 0.0  # where the current stream starts in the session's audio
        self.pending_audio = False  # audio appended since the last commit
        self.item: str | None = None  # the item being spoken
        self.previous: str | None = None
        self.finals: list[Segment] = []  # segments of the item (several with manual commits)
        self.partial = ""
        self.sent = ""  # stable text sent as deltas
        self.shown = ""  # the item's text as last reported

    # -- receiving -------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.send(f"{self.prefix}.created", session=self.description())
        worker = asyncio.create_task(self.work())
        try:
            while True:
                remaining = self.state.settings.max_session_seconds - self.elapsed()
                try:
                    if remaining <= 0:
                        raise SessionExpired
                    message = await asyncio.wait_for(self.websocket.receive(), remaining)
                    if message["type"] == "websocket.disconnect":
                        return
                    if message.get("text") is None:
                        raise APIError(400, "Send events as JSON text frames.", "invalid_event")
                    await self.handle(message["text"])
                except (TimeoutError, SessionExpired):
                    await self.expire()
                    return
                except APIError as error:
                    await self.error(error.message, error.code or "invalid_request_error")
        except WebSocketDisconnect:
            return  # the stream and its buffers go with this object
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker

    def elapsed(self) -> float:
        """The session's length so far: the longer of its time open and its audio."""
        return max(time.monotonic() - self.opened, self.seconds)

    async def expire(self) -> None:
        limit = self.state.settings.max_session_seconds
        with contextlib.suppress(Exception):  # the client may be gone already
            await self.error(f"Your session hit the maximum duration of {limit:g} s; open a "
                             "new one to go on.", "session_expired")  # fmt: skip
            await self.websocket.close(code=1000, reason="session expired")

    async def handle(self, message: str) -> None:
        try:
            event = json.loads(message)
        except json.JSONDecodeError:
            raise APIError(400, "The event is not JSON.", "invalid_json") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise APIError(400, "An event is a JSON object with a string 'type'.", "invalid_event")
        kind = event["type"]
        if kind in ("session.update", "transcription_session.update"):
            config = self.config.update(event.get("session"), kind.startswith("transcription"))
            stuck = self.unopenable == (self.generation, self.config)  # settings to fix
            if not config.same_run(self.config) and self.open_turn and not stuck:
                raise APIError(400, "Change the model, language or turn detection before "
                               "sending audio, or after input_audio_buffer.commit or .clear.",
                               "session_in_use")  # fmt: skip
            if not config.same_run(self.config):
                self.detected = None  # another model or language: decide again
            self.config = config
            self.prefix = kind.rsplit(".", 1)[0]
            await self.send(f"{self.prefix}.updated", session=self.description())
        elif kind == "input_audio_buffer.append":
            self.append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            self.open_turn = False  # the worker restarts the stream before later audio
            self.queue.put_nowait(("commit", self.generation, None))
        elif kind == "input_audio_buffer.clear":
            self.open_turn = False
            self.generation += 1
            self.backlog_s = 0.0
            self.queue.put_nowait(("clear", self.generation, None))
        else:
            raise APIError(400, f"Unknown client event type {kind!r}.", "unknown_event")

    def description(self) -> dict[str, Any]:
        opened = time.time() - (time.monotonic() - self.opened)
        expires = int(opened + self.state.settings.max_session_seconds)
        return self.config.describe(self.id, expires)

    def append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise APIError(400, "input_audio_buffer.append needs base64 'audio'.", "invalid_event")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, "'audio' is not valid base64.", "invalid_audio") from None
        seconds = len(data) / 2 / RATE
        limit = self.state.settings.max_realtime_backlog_seconds
        if self.backlog_s + seconds > limit:
            self.state.metrics.count("mmspeech_rejected_total", {"reason": "realtime_backlog"})
            waiting = self.backlog_s
            raise APIError(429, f"This audio ({seconds:.2f} s) was not accepted: {waiting:.1f} "
                           f"s of earlier audio wait to be transcribed (at most {limit:g} s). "
                           "Send it again after the next events, and no faster than real time.",
                           "audio_backlog_full")  # fmt: skip
        self.seconds += seconds
        if self.seconds > self.state.settings.max_session_seconds:
            raise SessionExpired
        self.backlog_s += seconds
        self.open_turn = True
        self.queue.put_nowait(("audio", self.generation, data))

    # -- the worker: stream, items and deltas ----------------------------------------------------

    async def work(self) -> None:
        while True:
            kind, generation, data = await self.queue.get()
            try:
                if kind == "audio":
                    if generation != self.generation:
                        continue  # cleared while it waited
                    try:
                        if self.unopenable != (generation, self.config):  # else: said once
                            await self.feed(data)
                    finally:
                        if generation == self.generation:
                            self.backlog_s = max(0.0, self.backlog_s - len(data) / 2 / RATE)
                elif kind == "commit":
                    await self.commit()
                elif generation == self.generation:  # the latest clear
                    self.restart()
                    await self.send("input_audio_buffer.cleared")
            except APIError as error:
                await self.error(error.message, error.code or "invalid_request_error")
            except MmspeechError as exc:  # bad audio, a model that cannot load
                await self.error(str(exc), "invalid_request_error")
            except Exception:  # a bug: say so, keep the session
                logger.exception("realtime session %s failed on %s", self.id, kind)
                failure = {"type": "server_error", "code": "server_error",
                         "message": "The server failed on this audio."}  # fmt: skip
                await self.send("error", error=failure)

    async def feed(self, data: bytes) -> None:
        if self.stream is None:
            try:
                await self.open()
            except (APIError, MmspeechError):  # one error, not one per append, until the
                self.unopenable = (self.generation, self.config)  # settings or turn change
                raise
        self.pending_audio = True
        await self.forward(await self.call(self.stream.feed, data))

    async def commit(self) -> None:
        if self.stream is None or not self.pending_audio:
            raise APIError(400, "The input audio buffer is empty: append audio before "
                           "committing.", "input_audio_buffer_commit_empty")  # fmt: skip
        await self.forward(await self.call(self.stream.finish))
        if self.running.turn is None or self.item is not None:  # what is left is one item
            await self.begin(self.stream.received_s)
            await self.complete(self.stream.received_s)
        self.restart()

    async def open(self) -> None:
        registry = self.state.registry
        self.running = self.config
        entry = registry.resolve(self.running.model, "asr")
        self.asr = await asyncio.to_thread(registry.get, entry)
        self.name = entry.name
        language = self.running.language or self.detected
        if language is None and self.asr.languages:
            if registry.default("lid") is None:
                raise APIError(400, "No language given and this server has no language-"
                               "identification model to detect it; set transcription.language "
                               "(e.g. 'en', 'fra').", "language_required", "language")  # fmt: skip
            lid_entry = registry.resolve(None, "lid")
            self.lid = await asyncio.to_thread(registry.get, lid_entry)
            self.lid_name = lid_entry.name
        options = TranscribeOptions()
        if self.running.turn is not None:
            options = replace(options, min_silence_s=self.running.turn.silence_duration_ms / 1000)

        def start() -> Any:
            return self.asr.stream(language, options, sample_rate=RATE, encoding="pcm16",
                                   lid=self.lid)  # fmt: skip

        try:
            self.stream = await self.call(start)
        except ValueError as exc:  # an unknown language: the client's to fix
            raise APIError(400, str(exc), "invalid_language", "language") from None

    async def call(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` in a thread, holding the model's lock (adapters are shared), and
        the LID model's while the stream may still run language ID."""

        def locked() -> Any:
            with self._locks():
                return function(*args)

        return await asyncio.to_thread(locked)

    @contextlib.contextmanager
    def _locks(self) -> Iterator[None]:
        registry = self.state.registry
        with registry.lock(self.name):
            if self.lid is not None and (self.stream is None or self.stream.deciding):
                with registry.lock(self.lid_name):
                    yield
            else:
                yield

    def restart(self) -> None:
        """A fresh stream for what comes next (same settings); times go on from here."""
        if self.stream is not None:
            self.offset_s += self.stream.received_s
        self.stream = None
        self.pending_audio = False
        self.item, self.finals, self.partial, self.sent, self.shown = None, [], "", "", ""

    async def forward(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, LanguageDecided):
                self.detected = event.code
                await self.send("mmspeech.language_detected", language=event.code,
                                probability=event.probability)  # fmt: skip
            elif isinstance(event, Partial):
                self.partial = event.text
                await self.begin(event.start)
                await self.update()
            elif isinstance(event, Final):
                await self.final(event.segment)

    async def final(self, segment: Segment) -> None:
        self.partial = ""
        no_speech = segment.no_speech_prob
        if (
            self.running.turn is not None
            and no_speech is not None
            and (no_speech > self.running.turn.no_speech_threshold)
        ):  # not speech: no text; an item it began ends empty
            if self.item is not None:
                await self.complete(segment.end)
            return
        await self.begin(segment.start)
        self.finals.append(segment)
        if self.running.turn is None:
            await self.update()
        else:
            await self.complete(segment.end)

    async def begin(self, start_s: float) -> None:
        """Open an item at ``start_s`` (stream seconds) unless one is open."""
        if self.item is not None:
            return
        self.item = _id("item")
        if self.running.turn is not None:
            start_ms = 1000 * (self.offset_s + start_s) - self.running.turn.prefix_padding_ms
            start_ms = max(start_ms, 1000 * self.offset_s)  # not before this stream's audio
            await self.send("input_audio_buffer.speech_started", item_id=self.item,
                            audio_start_ms=round(start_ms))  # fmt: skip

    def text(self) -> str:
        return " ".join([s.text for s in self.finals] + ([self.partial] if self.partial else []))

    async def update(self) -> None:
        """Send the new stable text as a delta, with the whole current text beside it."""
        text = self.text()
        if text == self.shown:
            return
        stable = text[: text.rfind(" ") + 1] if self.partial else text  # last word may change
        await self.delta(stable, text)

    async def delta(self, stable: str, text: str) -> None:
        new = ""
        if stable.startswith(self.sent):  # else an earlier word changed: deltas cannot retract
            new, self.sent = stable[len(self.sent) :], stable
        tail = text[len(self.sent) :] if text.startswith(self.sent) else text
        vendor = {"text": text, "tail": tail}
        await self.send("conversation.item.input_audio_transcription.delta", item_id=self.item,
                        content_index=0, delta=new, mmspeech=vendor)  # fmt: skip
        self.shown = text

    async def complete(self, end_s: float) -> None:
        """Close the open item: speech stopped (VAD), committed, completed."""
        transcript = " ".join(s.text for s in self.finals)
        unsent = transcript != self.sent and transcript.startswith(self.sent)
        if transcript != self.shown or unsent:  # the rest as the last delta
            await self.delta(transcript, transcript)
        start = self.offset_s + (self.finals[0].start if self.finals else end_s)
        end = self.offset_s + (self.finals[-1].end if self.finals else end_s)
        if self.running.turn is not None:
            await self.send("input_audio_buffer.speech_stopped", item_id=self.item,
                            audio_end_ms=round(1000 * end))  # fmt: skip
        await self.send("input_audio_buffer.committed", item_id=self.item,
                        previous_item_id=self.previous)  # fmt: skip
        language = self.stream.language if self.stream is not None else self.running.language
        await self.send("conversation.item.input_audio_transcription.completed",
                        item_id=self.item, content_index=0, transcript=transcript,
                        language=language, usage={"type": "duration", "seconds": end - start},
                        mmspeech={"start": round(start, 3), "end": round(end, 3)})  # fmt: skip
        self.previous = self.item
        self.item, self.finals, self.partial, self.sent, self.shown = None, [], "", "", ""

    # -- sending ---------------------------------------------------------------------------------

    async def error(self, message: str, code: str) -> None:
        await self.send("error", error={"type": "invalid_request_error", "code": code,
                                        "message": message})  # fmt: skip

    async def send(self, kind: str, **fields: Any) -> None:
        async with self.sending:  # the receiver and the worker both send
            await self.websocket.send_text(json.dumps({"event_id": _id("event"), "type": kind,
                                                       **fields}))  # fmt: skip
