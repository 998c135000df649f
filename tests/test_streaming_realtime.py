"""The OpenAI Realtime transcription WebSocket (/v1/realtime?intent=transcription) driven by a
client that follows the documented protocol: session update (GA and beta shapes), base64 pcm16
at 24 kHz appended in pieces, speech started/stopped, deltas and completed transcripts per
segment, turn detection (server VAD settings, manual commits), the language decision, errors that
leave the session open, the session and backlog limits, the server's API key, and the official
``openai`` client's realtime connection."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from types import SimpleNamespace
from typing import Any

import jiwer
import numpy as np
import pytest
import soxr
from conftest import espeak
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mmspeech.api.streaming import Final, Partial
from mmspeech.demo import demo_checkpoint
from mmspeech.errors import CheckpointNotFoundError
from mmspeech.results import Segment
from mmspeech.server.app import create_app
from mmspeech.server.realtime import Session
from mmspeech.server.realtime_config import SessionConfig, TurnDetection
from mmspeech.server.settings import ServerSettings

pytestmark = pytest.mark.usefixtures("one_thread")
TEXTS = ["hello how are you today my friend", "we will meet again tomorrow morning"]
KEY = {"Authorization": "Bearer secret"}


def demo_settings(**changes: Any) -> ServerSettings:
    try:
        asr, lid = str(demo_checkpoint("asr")), str(demo_checkpoint("lid"))
    except CheckpointNotFoundError as exc:
        pytest.skip(str(exc))
    models = {"demo": asr, "demo-lid": lid}
    return ServerSettings(models=models, default_asr="demo", default_lid="demo-lid", **changes)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(demo_settings(api_key="secret"))) as test_client:
        yield test_client


def pcm24k(audio: np.ndarray) -> bytes:
    return (soxr.resample(audio, 16_000, 24_000) * 32767).astype("<i2").tobytes()


def two_sentences(pause_s: float = 0.75) -> bytes:
    pause = np.zeros(int(16_000 * pause_s), dtype=np.float32)
    return pcm24k(np.concatenate([piece for text in TEXTS for piece in (espeak(text), pause)]))


def append_all(ws, pcm: bytes, piece: int = 9_600) -> None:
    for i in range(0, len(pcm), piece):  # 0.2 s per append
        chunk = base64.b64encode(pcm[i : i + piece]).decode()
        ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))


def update(ws, **session: Any) -> dict:
    ws.send_text(json.dumps({"type": "session.update", "session": session}))
    return json.loads(ws.receive_text())


def receive_until(ws, kind: str, seen: list) -> dict:
    while True:
        event = json.loads(ws.receive_text())
        seen.append(event)
        if event["type"] == kind:
            return event


def test_a_client_following_the_protocol_gets_one_item_per_segment(client):
    pcm = two_sentences()
    seen: list = []
    with client.websocket_connect("/v1/realtime?intent=transcription", headers=KEY) as ws:
        assert json.loads(ws.receive_text())["type"] == "session.created"
        ws.send_text(json.dumps({"type": "session.update", "session": {
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "demo", "language": "eng"}}}))  # fmt: skip
        assert json.loads(ws.receive_text())["type"] == "session.updated"
        ws.send_text("{not json")
        assert receive_until(ws, "error", seen)["error"]["code"] == "invalid_json"
        append_all(ws, pcm)
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        completed = [receive_until(ws, "conversation.item.input_audio_transcription.completed",
                                   seen) for _ in TEXTS]  # fmt: skip
    kinds = [event["type"] for event in seen]
    assert kinds.count("input_audio_buffer.speech_started") == 2
    assert kinds.count("input_audio_buffer.committed") == 2
    assert "conversation.item.input_audio_transcription.delta" in kinds
    items = [event["item_id"] for event in completed]
    assert len(set(items)) == 2
    started = [e for e in seen if e["type"] == "input_audio_buffer.speech_started"]
    assert started[1]["audio_start_ms"] > 1500  # the second sentence, in session time
    stopped = [e for e in seen if e["type"] == "input_audio_buffer.speech_stopped"]
    assert started[0]["audio_start_ms"] == 0  # the first word is within prefix_padding_ms
    assert stopped[0]["audio_end_ms"] < started[1]["audio_start_ms"]
    transcript = " ".join(event["transcript"] for event in completed)
    assert jiwer.cer(" ".join(TEXTS), transcript) < 0.4
    for event in completed:
        assert event["language"] == "eng"
        assert event["usage"]["type"] == "duration" and event["usage"]["seconds"] > 0.5
        assert 0 <= event["mmspeech"]["start"] < event["mmspeech"]["end"]
        deltas = [e for e in seen if e.get("item_id") == event["item_id"] and e["type"].endswith(
            "transcription.delta")]  # fmt: skip
        assert "".join(e["delta"] for e in deltas) == event["transcript"]  # append-only
        assert deltas[-1]["mmspeech"] == {"text": event["transcript"], "tail": ""}


def test_the_api_key_and_bad_events(client):
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/v1/realtime?intent=transcription") as ws,
    ):
        ws.receive_text()
    protocol = ["realtime", "openai-insecure-api-key.secret"]
    with client.websocket_connect("/v1/realtime", subprotocols=protocol) as ws:
        assert json.loads(ws.receive_text())["type"] == "session.created"
        ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": "@@"}))
        assert json.loads(ws.receive_text())["error"]["code"] == "invalid_audio"
        ws.send_bytes(b"\x00\x01")
        assert json.loads(ws.receive_text())["error"]["code"] == "invalid_event"
        ws.send_text(json.dumps({"type": "response.create"}))
        assert json.loads(ws.receive_text())["error"]["code"] == "unknown_event"
        ws.send_text(json.dumps({"type": "transcription_session.update",
                                 "session": {"input_audio_format": "g711_ulaw"}}))  # fmt: skip
        assert json.loads(ws.receive_text())["error"]["code"] == "unsupported_format"
        ws.send_text(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads(ws.receive_text())["type"] == "input_audio_buffer.cleared"


def test_live_sessions_are_limited_and_freed_when_a_client_leaves():
    try:
        asr = str(demo_checkpoint("asr"))
    except CheckpointNotFoundError as exc:
        pytest.skip(str(exc))
    settings = ServerSettings(models={"demo": asr}, default_asr="demo", max_queue=1)
    with TestClient(create_app(settings)) as test_client:
        with test_client.websocket_connect("/v1/realtime") as first:
            assert json.loads(first.receive_text())["type"] == "session.created"
            with test_client.websocket_connect("/v1/realtime") as second:
                refused = json.loads(second.receive_text())
                assert refused["type"] == "error"
                assert refused["error"]["code"] == "too_many_sessions"
        with test_client.websocket_connect("/v1/realtime") as again:  # the first one left
            assert json.loads(again.receive_text())["type"] == "session.created"
        metrics = test_client.get("/metrics").text
        assert 'mmspeech_rejected_total{reason="realtime_sessions"} 1.0' in metrics
        opened = 'endpoint="/v1/realtime",method="GET",status="101"} 2.0'
        assert any(line.endswith(opened) for line in metrics.splitlines())


def test_the_ga_session_shape_and_manual_commits(client):
    """turn_detection null: no VAD events; the client's commit ends the item, whatever pauses it
    holds; the session is described back in the GA shape."""
    seen: list = []
    with client.websocket_connect("/v1/realtime?intent=transcription", headers=KEY) as ws:
        created = json.loads(ws.receive_text())
        assert created["session"]["type"] == "transcription"
        source = {"format": {"type": "audio/pcm", "rate": 24_000}, "turn_detection": None,
                  "transcription": {"model": "demo", "language": "en"}}  # fmt: skip
        updated = update(ws, type="transcription", audio={"input": source})
        assert updated["type"] == "session.updated"
        described = updated["session"]["audio"]["input"]
        assert described["turn_detection"] is None
        assert described["transcription"] == {"model": "demo", "language": "en"}
        assert described["format"] == {"type": "audio/pcm", "rate": 24_000}
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        assert (
            receive_until(ws, "error", seen)["error"]["code"] == "input_audio_buffer_commit_empty"
        )
        append_all(ws, two_sentences())
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        completed = receive_until(ws, "conversation.item.input_audio_transcription.completed", seen)
        committed = [e for e in seen if e["type"] == "input_audio_buffer.committed"]
    kinds = {event["type"] for event in seen}
    assert "input_audio_buffer.speech_started" not in kinds
    assert len(committed) == 1 and committed[0]["item_id"] == completed["item_id"]
    assert jiwer.cer(" ".join(TEXTS), completed["transcript"]) < 0.4  # both sentences, one item
    assert completed["language"] == "eng"


def test_server_vad_settings_are_honoured(client):
    seen: list = []
    with client.websocket_connect("/v1/realtime?intent=transcription", headers=KEY) as ws:
        ws.receive_text()
        turn = {"type": "server_vad", "silence_duration_ms": 1500, "prefix_padding_ms": 0,
                "threshold": 0.2}  # fmt: skip
        transcription = {"model": "demo", "language": "eng"}
        updated = update(ws, input_audio_format="pcm16", turn_detection=turn,
                         input_audio_transcription=transcription)  # fmt: skip
        assert updated["session"]["turn_detection"] == turn  # beta shape, as the client wrote
        append_all(ws, two_sentences(pause_s=0.75))  # a pause shorter than silence_duration_ms
        # settings change only between turns; speech_started or deltas may come before the reply
        ws.send_text(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
        refused = receive_until(ws, "error", seen)
        assert refused["error"]["code"] == "session_in_use"
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        ws.send_text(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
        completed = receive_until(ws, "conversation.item.input_audio_transcription.completed", seen)
        reply = next((e for e in seen if e["type"] == "session.updated"), None) or receive_until(
            ws, "session.updated", seen
        )  # accepted: it is for the next turn
        assert reply["session"]["turn_detection"] is None
        started = next(e for e in seen if e["type"] == "input_audio_buffer.speech_started")
        bad = update(ws, turn_detection={"type": "semantic_vad"})
        assert bad["error"]["code"] == "unsupported_turn_detection"
        bad = update(ws, turn_detection={"type": "server_vad", "threshold": 2})
        assert bad["error"]["code"] == "invalid_turn_detection"
    assert jiwer.cer(" ".join(TEXTS), completed["transcript"]) < 0.4  # one item for both
    assert started["audio_start_ms"] == round(1000 * completed["mmspeech"]["start"])  # no padding
    assert TurnDetection(threshold=0.2).no_speech_threshold == pytest.approx(0.9)
    assert TurnDetection().no_speech_threshold == 0.75


def test_a_session_that_cannot_start_says_so_once_and_can_be_fixed(client):
    seen: list = []
    with client.websocket_connect("/v1/realtime?intent=transcription", headers=KEY) as ws:
        ws.receive_text()
        update(ws, input_audio_transcription={"model": "demo", "language": "klingon"})
        append_all(ws, two_sentences())
        assert receive_until(ws, "error", seen)["error"]["code"] == "invalid_language"
        ws.send_text(json.dumps({"type": "session.update", "session": {
            "input_audio_transcription": {"model": "demo", "language": "eng"}}}))  # fmt: skip
        receive_until(ws, "session.updated", seen)
        append_all(ws, two_sentences())
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        receive_until(ws, "conversation.item.input_audio_transcription.completed", seen)
    errors = [e["error"]["code"] for e in seen if e["type"] == "error"]
    assert errors == ["invalid_language"]  # once, not once per append


def test_the_language_is_detected_and_reported(client):
    seen: list = []
    with client.websocket_connect("/v1/realtime?intent=transcription", headers=KEY) as ws:
        ws.receive_text()
        update(ws, type="transcription", audio={"input": {"transcription": {"model": "demo"}}})
        append_all(ws, pcm24k(espeak("guten morgen wie geht es dir heute", "de", seconds=4.0)))
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        completed = receive_until(ws, "conversation.item.input_audio_transcription.completed", seen)
    decided = [e for e in seen if e["type"] == "mmspeech.language_detected"]
    assert len(decided) == 1 and decided[0]["language"] == "deu"
    assert 0 < decided[0]["probability"] <= 1
    assert completed["language"] == "deu"


def test_a_backlog_beyond_the_limit_is_refused_and_the_session_goes_on():
    settings = demo_settings(max_realtime_backlog_seconds=1.0, max_audio_seconds=1.0)
    pcm = two_sentences()  # ~5 s: longer than the upload limit, which live sessions ignore
    seen: list = []
    with TestClient(create_app(settings)) as test_client:
        with test_client.websocket_connect("/v1/realtime?intent=transcription") as ws:
            ws.receive_text()
            update(ws, input_audio_transcription={"model": "demo", "language": "eng"})
            too_much = base64.b64encode(pcm[: 2 * 36_000]).decode()  # 1.5 s in one append
            ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": too_much}))
            refused = receive_until(ws, "error", seen)["error"]
            assert refused["code"] == "audio_backlog_full"
            assert "not accepted" in refused["message"]
            for i in range(0, len(pcm), 4_800):  # 0.1 s appends, paced: accepted
                chunk = base64.b64encode(pcm[i : i + 4_800]).decode()
                ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                time.sleep(0.02)
            ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
            receive_until(ws, "conversation.item.input_audio_transcription.completed", seen)
        metrics = test_client.get("/metrics").text
    errors = [e["error"]["code"] for e in seen if e["type"] == "error"]
    assert errors.count("audio_too_long") == 0
    assert 'mmspeech_rejected_total{reason="realtime_backlog"}' in metrics


def test_sessions_expire_by_time_and_by_audio():
    with (
        TestClient(create_app(demo_settings(max_session_seconds=0.5))) as test_client,
        test_client.websocket_connect("/v1/realtime?intent=transcription") as ws,
    ):
        created = json.loads(ws.receive_text())
        assert created["session"]["expires_at"] <= time.time() + 1
        expired = json.loads(ws.receive_text())  # nothing sent: the clock runs out
        assert expired["error"]["code"] == "session_expired"
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()
    with (
        TestClient(create_app(demo_settings(max_session_seconds=1.0))) as test_client,
        test_client.websocket_connect("/v1/realtime?intent=transcription") as ws,
    ):
        ws.receive_text()
        update(ws, input_audio_transcription={"model": "demo", "language": "eng"})
        append_all(ws, two_sentences()[: 2 * 36_000])  # 1.5 s of audio at once
        seen: list = []
        assert receive_until(ws, "error", seen)["error"]["code"] == "session_expired"
        with pytest.raises(WebSocketDisconnect):
            while True:
                ws.receive_text()


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))


def segment(text: str, start: float, end: float, no_speech: float = 0.5) -> Segment:
    return Segment(0, start, end, text, no_speech_prob=no_speech)


def test_revised_partials_reach_the_caption_through_the_vendor_text():
    """Deltas only ever append the stable words; a revision (here of a word already sent) is in
    ``mmspeech.text``, and the completed transcript is the truth."""
    session = Session(FakeSocket(), SimpleNamespace(settings=ServerSettings()))  # type: ignore[arg-type]
    events = [Partial("hel", 0.1), Partial("hello wor", 0.1), Partial("hello word", 0.1),
              Partial("help word", 0.1), Final(segment("help world", 0.1, 0.9))]  # fmt: skip
    asyncio.run(session.forward(events))
    sent = session.websocket.sent  # type: ignore[attr-defined]
    deltas = [e for e in sent if e["type"].endswith("transcription.delta")]
    assert [e["delta"] for e in deltas] == ["", "hello ", "", "", ""]
    assert [e["mmspeech"]["tail"] for e in deltas] == [
        "hel",
        "wor",
        "word",
        "help word",
        "help world",
    ]
    assert [e["mmspeech"]["text"] for e in deltas][-2:] == ["help word", "help world"]
    completed = sent[-1]
    assert completed["transcript"] == "help world"
    assert sent[0]["type"] == "input_audio_buffer.speech_started"


def test_the_threshold_decides_what_is_speech():
    session = Session(FakeSocket(), SimpleNamespace(settings=ServerSettings()))  # type: ignore[arg-type]
    assert session.config == SessionConfig()  # threshold 0.5: blank mass above 0.75 is no speech
    events = [Partial("uh", 0.0), Final(segment("uh", 0.0, 0.4, no_speech=0.8)),
              Final(segment("hm", 1.0, 1.4, no_speech=0.9)),
              Final(segment("hello", 2.0, 2.5, no_speech=0.6))]  # fmt: skip
    asyncio.run(session.forward(events))
    completed = [e for e in session.websocket.sent  # type: ignore[attr-defined]
                 if e["type"].endswith("transcription.completed")]  # fmt: skip
    assert [e["transcript"] for e in completed] == ["", "hello"]  # the begun item ends empty


def test_the_official_openai_client_runs_a_transcription_session():
    openai = pytest.importorskip("openai")
    pytest.importorskip("websockets")
    from test_server import LiveServer

    pcm = two_sentences()
    with LiveServer(create_app(demo_settings(api_key="secret"))) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="secret")
        with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
            assert connection.recv().type == "session.created"
            connection.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24_000},
                "transcription": {"model": "whisper-1", "language": "en"}}}})  # fmt: skip
            for i in range(0, len(pcm), 9_600):
                connection.input_audio_buffer.append(
                    audio=base64.b64encode(pcm[i : i + 9_600]).decode()
                )
            connection.input_audio_buffer.commit()
            transcripts, kinds = [], []
            for event in connection:
                kinds.append(event.type)
                if event.type == "conversation.item.input_audio_transcription.completed":
                    transcripts.append(event.transcript)
                    if len(transcripts) == len(TEXTS):
                        break
    assert kinds[0] == "session.updated"
    assert "conversation.item.input_audio_transcription.delta" in kinds
    assert jiwer.cer(" ".join(TEXTS), " ".join(transcripts)) < 0.4
