"""The server's reliability limits (issue 20): decode bombs, failed loads, stalled and abandoned
clients, timeouts. Each test states the limit it holds the server to."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

pytest.importorskip("fastapi")

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# -- decode bombs: memory per request is bounded by the limits, whatever the file declares -------

_MEMORY_PROBE = textwrap.dedent(
    """
    import io, json, resource, sys
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    import numpy as np, soundfile, torch
    from fastapi.testclient import TestClient
    from mmspeech.server import ServerSettings, create_app

    torch.set_num_threads(1)
    models, bombs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    settings = ServerSettings(
        models_dir=models, default_asr="mms-tiny-all", workers=1, max_audio_seconds=300
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        def post(data):
            return http.post("/v1/audio/transcriptions", files={"file": ("a.wav", data)},
                             data={"language": "eng"})
        buffer = io.BytesIO()
        soundfile.write(buffer, np.zeros(16000, np.float32), 16000, format="WAV")
        assert post(buffer.getvalue()).status_code == 200  # model loaded, everything warm
        idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        payloads = [path.read_bytes() for path in bombs]
        with ThreadPoolExecutor(len(payloads)) as pool:
            statuses = [r.status_code for r in pool.map(post, payloads)]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"statuses": statuses, "grew_mb": (peak - idle) / 1024}))
    """
)


def _wav(rate: int, frames: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(frames, np.int16), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _without_length(flac: bytes) -> bytes:
    """A FLAC whose STREAMINFO says "length unknown" (its 36-bit total-samples field zeroed)."""
    data = bytearray(flac)
    field = 4 + 4 + 10  # "fLaC", the metadata block header, block and frame size fields
    data[field + 3] &= 0xF0
    data[field + 4 : field + 8] = bytes(4)
    return bytes(data)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Small files that decode to gigabytes, against a 300 s limit: a 40 KB WAV at 1 Hz
    (20,000 s, 1.3 GB once resampled) twice; a 230 KB silent 8-channel 48 kHz FLAC of 590 s
    (900 MB as float32) that says so; the same FLAC without its length, twice (decoded until
    the output passes the limit)."""
    root = tmp_path_factory.mktemp("bombs")
    slow = root / "one-hertz.wav"
    slow.write_bytes(_wav(1, 20_000))
    wide = root / "eight-channels.flac"
    silence = np.zeros((48_000, 8), np.int16)
    with soundfile.SoundFile(wide, "w", 48_000, 8, format="FLAC", subtype="PCM_16") as handle:
        for _ in range(590):
            handle.write(silence)
    endless = root / "eight-channels-no-length.flac"
    endless.write_bytes(_without_length(wide.read_bytes()))
    return [slow, slow, wide, endless, endless]


def test_decode_bombs_keep_the_server_within_300_mb_of_idle(server_models: Path, bombs):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(server_models), *map(str, bombs)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"decode bombs: statuses {report['statuses']}, peak RSS +{report['grew_mb']:.0f} MB")
    # the 1 Hz files and the long FLAC are refused from their header; the FLACs without a length
    # are decoded up to the limit, then refused
    assert report["statuses"] == [400, 400, 413, 413, 413], report
    assert report["grew_mb"] < 300, report


# -- timeouts and the queue: fake models that block until the test lets them go ---------------


class Gate:
    """What a fake model waits on; ``started`` tells the test it is inside the model."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        # streams: one permit per item, and whether the stream's generator has been closed
        self.permits = threading.Semaphore(0)
        self.items = 0
        self.closed = threading.Event()

    def open(self) -> None:
        """Let every waiting and future call through."""
        self.release.set()
        self.permits.release(100)

    def wait(self) -> None:
        self.calls += 1
        self.started.set()
        assert self.release.wait(30), "the test never released the model"

    def items_of(self, make: Any) -> Iterator[Any]:
        """Items made one per permit (or all at once after ``release``)."""
        try:
            for index in range(100):
                self.started.set()
                if not self.release.is_set():
                    assert self.permits.acquire(timeout=30), "the test gave no permit"
                self.items += 1
                yield make(index)
        finally:
            self.closed.set()


class FakeASR:
    def __init__(self, gate: Gate):
        self.gate = gate
        self.languages: list[str] = []  # one vocabulary: no language to resolve

    def transcribe(self, waveform: Any, **options: Any) -> Any:
        from mmspeech.results import Transcription

        self.gate.wait()
        return Transcription(text="ok", language=None, language_probability=None, duration=1.0)

    def iter_segments(self, waveform: Any, **options: Any) -> Iterator[Any]:
        from mmspeech.results import Segment

        return self.gate.items_of(lambda i: Segment(id=i, start=i, end=i + 1, text=f"s{i}"))


class FakeTTS:
    def __init__(self, gate: Gate):
        self.gate = gate

    def synthesize(self, text: str, **options: Any) -> Any:
        return next(self.iter_synthesize(text))

    def iter_synthesize(self, text: str, **options: Any) -> Iterator[Any]:
        from mmspeech.results import Synthesis

        return self.gate.items_of(lambda i: Synthesis(np.zeros(160, np.float32), 16_000))


def fake_app(tmp_path: Path, gate: Gate, **changes: Any) -> Any:
    from mmspeech.server import ServerSettings, create_app

    for name, architecture in (("fake-asr", "Wav2Vec2ForCTC"), ("fake-tts", "VitsModel")):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    settings = ServerSettings(models_dir=tmp_path, workers=1, **changes)
    loaders = {"asr": lambda ref, device: FakeASR(gate), "tts": lambda ref, device: FakeTTS(gate)}
    return create_app(settings, loaders)


def rejected(http: Any, reason: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "mmspeech_rejected_total" and sample.labels["reason"] == reason:
                return sample.value
    return 0.0


def test_requests_past_the_timeout_answer_504_streamed_or_not(tmp_path: Path):
    """Issue 20 item 8: wav/pcm speech and streamed transcription honour --timeout with a 504
    (they answered 500, or ran on), counted as rejected for timeout."""
    from fastapi.testclient import TestClient

    gate = Gate()
    app = fake_app(tmp_path, gate, request_timeout=0.2)
    audio = {"file": ("a.wav", _wav(16_000, 16_000), "audio/wav")}
    try:
        with TestClient(app, raise_server_exceptions=False) as http:
            for fmt in ("wav", "pcm"):
                response = http.post(
                    "/v1/audio/speech", json={"input": "hello", "response_format": fmt}
                )
                assert response.status_code == 504, response.text
                assert response.json()["error"]["code"] == "timeout"
            for stream in ("true", "false"):
                response = http.post(
                    "/v1/audio/transcriptions", files=audio, data={"stream": stream}
                )
                assert response.status_code == 504, response.text
            assert rejected(http, "timeout") == 4
    finally:
        gate.open()


def test_streaming_requests_over_the_queue_limit_are_counted(tmp_path: Path):
    """Issue 20 item 8: a 429 from the streaming path counts in mmspeech_rejected_total."""
    from fastapi.testclient import TestClient

    gate = Gate()
    app = fake_app(tmp_path, gate, max_queue=1, request_timeout=30)
    try:
        with TestClient(app, raise_server_exceptions=False) as http, ThreadPoolExecutor(1) as pool:
            busy = pool.submit(
                http.post, "/v1/audio/speech", json={"input": "a", "response_format": "flac"}
            )
            assert gate.started.wait(30)  # the queue's one place is taken
            for fmt in ("wav", "pcm"):
                response = http.post(
                    "/v1/audio/speech", json={"input": "hello", "response_format": fmt}
                )
                assert response.status_code == 429, response.text
            assert rejected(http, "queue_full") == 2
            gate.open()
            busy.result(30)
    finally:
        gate.open()


# -- stalled and abandoned clients, against a real uvicorn server -----------------------------


def raw_request(url: str, head: str, body: bytes) -> socket.socket:
    """A socket that has sent ``head`` (request line and headers) and ``body``."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    return connection


def upload(path: str, data: bytes, content_length: int | None = None) -> tuple[str, bytes]:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    length = len(body) if content_length is None else content_length
    head = (
        f"POST {path} HTTP/1.1\nHost: test\nContent-Type: multipart/form-data; "
        f"boundary={boundary}\nContent-Length: {length}\n"
    )
    return head, body


def test_a_stalled_body_is_timed_out_and_its_connection_closed(tmp_path: Path):
    """Issue 20 item 5: a client that stops mid-body gets a 408 after body_timeout and its
    connection is closed (it stayed open 75 s+ before)."""
    from test_server import LiveServer

    gate = Gate()
    with LiveServer(fake_app(tmp_path, gate, body_timeout=0.3)) as live:
        head, body = upload("/v1/audio/transcriptions", _wav(16_000, 16_000))
        connection = raw_request(live.url, head, body[: len(body) // 2])  # then nothing more
        with connection:
            reply = b""
            while chunk := connection.recv(65536):  # until the server closes the connection
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"request_timeout" in reply and gate.calls == 0


def test_queued_work_of_a_client_that_left_never_runs(tmp_path: Path):
    """Issue 20 item 4: clients that close their connection right after uploading have their
    queued jobs withdrawn (six such clients cost 38 s of queue before)."""
    from test_server import LiveServer

    gate = Gate()
    app = fake_app(tmp_path, gate, request_timeout=30)
    scheduler = app.state.mmspeech.scheduler
    with LiveServer(app) as live, ThreadPoolExecutor(1) as pool:
        head, body = upload("/v1/audio/transcriptions", _wav(16_000, 16_000))
        first = pool.submit(raw_request, live.url, head, body)
        assert gate.started.wait(30)  # the one worker is busy with the first request
        leavers = [raw_request(live.url, head, body) for _ in range(3)]
        # wait (on the server's own state) until all three are queued, then leave
        assert _eventually(lambda: scheduler.depth == 4), scheduler.depth
        for connection in leavers:
            connection.close()
        assert _eventually(lambda: scheduler.depth == 1), scheduler.depth
        gate.open()
        with first.result(30) as connection:
            assert connection.recv(65536).startswith(b"HTTP/1.1 200")
    assert gate.calls == 1  # only the client that stayed was transcribed


@pytest.mark.parametrize("endpoint", ["transcription", "speech"])
def test_a_stream_stops_at_its_next_item_when_the_client_closes(tmp_path: Path, endpoint: str):
    """Issue 20 item 4: closed SSE transcription and streamed speech ran on for 19 s / 5.5 s;
    now the generator is closed at the item after the client left."""
    from test_server import LiveServer

    gate = Gate()
    app = fake_app(tmp_path, gate, request_timeout=30)
    metrics = app.state.mmspeech.metrics
    if endpoint == "transcription":
        head, body = upload("/v1/audio/transcriptions", _wav(16_000, 16_000))
        body = body.replace(
            b"--b0undary--",
            b'--b0undary\r\nContent-Disposition: form-data; name="stream"\r\n\r\ntrue\r\n'
            b"--b0undary--",
        )
        head = head.split("Content-Length:")[0] + f"Content-Length: {len(body)}\n"
    else:
        body = json.dumps({"input": "hello", "response_format": "pcm"}).encode()
        head = (
            "POST /v1/audio/speech HTTP/1.1\nHost: test\nContent-Type: application/json\n"
            f"Content-Length: {len(body)}\n"
        )
    with LiveServer(app) as live:
        gate.permits.release()  # the first item
        connection = raw_request(live.url, head, body)
        first = connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:300]
        connection.close()
        gone = lambda: 'reason="client_gone"} 1.0' in metrics.render({})  # noqa: E731
        assert _eventually(gone)
        gate.permits.release()  # the generator makes one more item, sees the stop, and ends
        assert gate.closed.wait(20)
        assert gate.items == 2


def _eventually(condition: Any, seconds: float = 20.0) -> bool:
    """Whether ``condition()`` becomes true within ``seconds`` (checked as events arrive on the
    server's loop, every 10 ms at most)."""
    done = threading.Event()
    for _ in range(int(seconds * 100)):
        if condition():
            return True
        done.wait(0.01)
    return bool(condition())
