"""The OpenAI Realtime transcription WebSocket (/v1/realtime?intent=transcription) driven by a
client that follows the documented protocol: session update, base64 pcm16 at 24 kHz appended in
pieces, speech started/stopped, deltas and completed transcripts per segment, errors that leave
the session open, and the server's API key."""

from __future__ import annotations

import base64
import json

import jiwer
import numpy as np
import pytest
import soxr
from conftest import espeak
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mmspeech.demo import demo_checkpoint
from mmspeech.errors import CheckpointNotFoundError
from mmspeech.server.app import create_app
from mmspeech.server.settings import ServerSettings

pytestmark = pytest.mark.usefixtures("one_thread")
TEXTS = ["hello how are you today my friend", "we will meet again tomorrow morning"]
KEY = {"Authorization": "Bearer secret"}


@pytest.fixture(scope="module")
def client():
    try:
        asr = str(demo_checkpoint("asr"))
    except CheckpointNotFoundError as exc:
        pytest.skip(str(exc))
    settings = ServerSettings(models={"demo": asr}, default_asr="demo", api_key="secret")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def receive_until(ws, kind: str, seen: list) -> dict:
    while True:
        event = json.loads(ws.receive_text())
        seen.append(event)
        if event["type"] == kind:
            return event


def test_a_client_following_the_protocol_gets_one_item_per_segment(client):
    pause = np.zeros(12_000, dtype=np.float32)
    audio = np.concatenate([piece for text in TEXTS for piece in (espeak(text), pause)])
    pcm = (soxr.resample(audio, 16_000, 24_000) * 32767).astype("<i2").tobytes()
    seen: list = []
    with client.websocket_connect("/v1/realtime?intent=transcription", headers=KEY) as ws:
        assert json.loads(ws.receive_text())["type"] == "session.created"
        ws.send_text(json.dumps({"type": "session.update", "session": {
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "demo", "language": "eng"}}}))  # fmt: skip
        assert json.loads(ws.receive_text())["type"] == "session.updated"
        ws.send_text("{not json")
        assert receive_until(ws, "error", seen)["error"]["code"] == "invalid_json"
        for i in range(0, len(pcm), 9_600):  # 0.2 s per append
            chunk = base64.b64encode(pcm[i : i + 9_600]).decode()
            ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
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
    transcript = " ".join(event["transcript"] for event in completed)
    assert jiwer.cer(" ".join(TEXTS), transcript) < 0.4


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
