"""The speech server end to end: the official ``openai`` client against a real uvicorn server on
a loopback port, raw HTTP for our endpoints, and every bad input of the issue as a specific 4xx."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from conftest import speech

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from mmspeech.api import load_asr, load_lid, load_speech2text, load_tts  # noqa: E402
from mmspeech.server import ServerSettings, create_app  # noqa: E402

API_KEY = "test-key-0123456789"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class LiveServer:
    """A uvicorn server in a thread on a free loopback port."""

    def __init__(self, app: Any):
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(2000):  # up to ~20 s on a busy machine
            if self.server.started:
                break
            self.thread.join(0.01)
        assert self.server.started, "uvicorn did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def settings_for(models_dir: Path, **changes: Any) -> ServerSettings:
    return ServerSettings(
        models_dir=models_dir,
        default_asr="mms-tiny-all",
        default_lid="mms-lid-tiny",
        default_tts="mms-tts-eng",
        **changes,
    )


def build_speech2text(directory: Path) -> Path:
    """A tiny wav2vec2 + GPT-2 speech encoder-decoder with a word-level vocab.json."""
    transformers = pytest.importorskip("transformers")
    from conftest import TINY

    decoder = transformers.GPT2Config(
        vocab_size=12, n_embd=16, n_layer=1, n_head=2, n_positions=256,
        bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )  # fmt: skip
    config = transformers.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.Wav2Vec2Config(**TINY), decoder
    )
    config.decoder_start_token_id, config.eos_token_id, config.pad_token_id = 0, 1, 2
    torch.manual_seed(0)
    transformers.SpeechEncoderDecoderModel(config=config).eval().save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(directory)
    words = ["hallo", "welt", "ich", "bin", "da", "ja", "nein", "gut", "so"]
    tokens = ["<s>", "</s>", "<pad>", *(f"\u0120{word}" for word in words)]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    return directory


@pytest.fixture(scope="module")
def speech2text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_speech2text(tmp_path_factory.mktemp("s2t-tiny"))


@pytest.fixture(scope="module")
def live(server_models: Path, speech2text_dir: Path) -> Iterator[LiveServer]:
    settings = settings_for(
        server_models,
        models={"s2t-tiny": str(speech2text_dir)},
        default_translation="s2t-tiny",
        api_key=API_KEY,
        max_batch=8,
        batch_wait=0.2,
    )
    app = create_app(settings)
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Any:
    return openai.OpenAI(base_url=live.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def wav_bytes(waveform: np.ndarray, rate: int = 16_000, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, waveform, rate, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    path.write_bytes(wav_bytes(speech(1.5, seed=3)))
    return path


@pytest.fixture(scope="module")
def expected(server_models: Path, clip: Path) -> dict[str, Any]:
    """What the high-level API gives on the same clip: the server must return exactly that."""
    asr = load_asr(server_models / "mms-tiny-all", device="cpu")
    lid = load_lid(server_models / "mms-lid-tiny", device="cpu")
    return {
        "fra": asr.transcribe(clip, language="fra", word_timestamps=True),
        "deu": asr.transcribe(clip, language="deu"),
        "lid": lid.identify(clip, top_k=3),
    }


# -- the official OpenAI client ----------------------------------------------------------------


def test_openai_client_transcribes_in_every_format(client, clip, expected):
    fra = expected["fra"]
    with clip.open("rb") as handle:
        result = client.audio.transcriptions.create(model="whisper-1", file=handle, language="fr")
    assert result.text == fra.text and fra.text
    with clip.open("rb") as handle:
        text = client.audio.transcriptions.create(
            model="mms-tiny-all", file=handle, language="fra", response_format="text"
        )
    assert text.strip() == fra.text
    for fmt, first_line in (("srt", "1"), ("vtt", "WEBVTT")):
        with clip.open("rb") as handle:
            subtitles = client.audio.transcriptions.create(
                model="whisper-1", file=handle, language="French", response_format=fmt
            )
        lines = subtitles.strip().splitlines()
        assert lines[0] == first_line
        assert "-->" in subtitles and fra.segments[0].text in subtitles
    with clip.open("rb") as handle:
        verbose = client.audio.transcriptions.create(
            model="whisper-1",
            file=handle,
            language="fra",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert verbose.text == fra.text
    assert verbose.language == "french"
    assert verbose.duration == pytest.approx(1.5)
    assert [s.text for s in verbose.segments] == [s.text for s in fra.segments]
    assert [s.start for s in verbose.segments] == [s.start for s in fra.segments]
    words = [w for s in fra.segments for w in s.words]
    assert [(w.word, w.start, w.end) for w in verbose.words] == [
        (w.text, w.start, w.end) for w in words
    ]


def test_openai_client_language_is_detected_when_not_given(client, clip, expected):
    with clip.open("rb") as handle:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=handle, response_format="verbose_json"
        )
    # the tiny LID model always says French; the transcript is then the French one
    assert verbose.language == "french"
    assert verbose.text == expected["fra"].text
    assert verbose.model_extra["language_probability"] > 0.9


def test_openai_client_streams_segments(client, clip, expected):
    with clip.open("rb") as handle:
        events = list(
            client.audio.transcriptions.create(
                model="whisper-1", file=handle, language="deu", stream=True
            )
        )
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [e.delta for e in deltas] == [s.text for s in expected["deu"].segments]
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text == expected["deu"].text


@pytest.mark.parametrize("fmt", ["wav", "flac", "pcm", "mp3", "opus"])
def test_openai_client_speech(client, fmt, tmp_path, server_models):
    if fmt in ("mp3", "opus"):
        pytest.importorskip("av", reason="PyAV encodes mp3 and opus")
    response = client.audio.speech.create(
        model="tts-1", voice="alloy", input="hello there. it is a good day.", response_format=fmt
    )
    data = response.read()
    reference = load_tts(server_models / "mms-tts-eng", device="cpu")
    samples = len(reference.synthesize("hello there. it is a good day.").waveform)
    if fmt == "pcm":
        waveform = np.frombuffer(data, "<i2")
    else:
        path = tmp_path / f"speech.{fmt}"
        path.write_bytes(data)
        if fmt in ("mp3", "opus"):
            from mmspeech.audio import load_audio

            waveform = load_audio(path, 16_000)
        else:
            waveform, rate = soundfile.read(path)
            assert rate == 16_000
    # VITS durations are stochastic: same model, same text, lengths agree within a factor
    assert 0.3 * samples < len(waveform) < 3 * samples
    assert np.abs(waveform).max() > 0


def test_speech_speed_and_voice_as_language(client):
    slow = client.audio.speech.create(
        model="tts-1", voice="alloy", input="hello there", response_format="pcm", speed=0.5
    ).read()
    fast = client.audio.speech.create(
        model="tts-1", voice="alloy", input="hello there", response_format="pcm", speed=3.0
    ).read()
    assert len(slow) > 2 * len(fast)
    french = client.audio.speech.create(
        model="tts-1", voice="fr", input="bonne idee", response_format="wav"
    ).read()
    assert french[:4] == b"RIFF"
    assert soundfile.read(io.BytesIO(french))[0].size > 0


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # openai marks translations
def test_openai_client_translates(client, clip, speech2text_dir):
    expected = load_speech2text(speech2text_dir, device="cpu").translate(clip)
    assert expected.text
    with clip.open("rb") as handle:
        result = client.audio.translations.create(model="whisper-1", file=handle)
    assert result.text == expected.text
    with clip.open("rb") as handle:
        srt = client.audio.translations.create(model="s2t-tiny", file=handle, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and expected.text in srt


def test_openai_client_lists_models(client):
    models = {model.id: model for model in client.models.list()}
    assert {"mms-tiny-all", "mms-lid-tiny", "mms-tts-eng", "mms-tts-fra"} <= set(models)
    assert models["whisper-1"].model_extra["alias_of"] == "mms-tiny-all"
    assert models["mms-tts-fra"].model_extra["task"] == "tts"


# -- raw HTTP: our endpoints -------------------------------------------------------------------


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def test_language_endpoint(live, clip, expected):
    response = httpx.post(
        live.url + "/v1/audio/language",
        headers=auth(),
        files={"file": ("clip.wav", clip.read_bytes(), "audio/wav")},
        data={"top_k": "3"},
    )
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(expected["lid"].to_dict()))
    assert response.json()["language"] == "fra"


def test_health_metrics_and_page(live, clip):
    health = httpx.get(live.url + "/health")  # no key needed
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert httpx.get(live.url + "/metrics").status_code == 401
    metrics = httpx.get(live.url + "/metrics", headers=auth()).text
    assert 'mmspeech_requests_total{endpoint="/health",method="GET",status="200"}' in metrics
    assert "mmspeech_queue_depth 0" in metrics
    assert "mmspeech_request_duration_seconds_bucket" in metrics
    page = httpx.get(live.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="transcribe"' in page.text and "/v1/audio/speech" in page.text


def test_concurrent_same_language_requests_are_micro_batched(live, clip, expected):
    """Eight simultaneous French requests: fewer forward calls than requests, same answers."""

    def before() -> tuple[float, float]:
        text = httpx.get(live.url + "/metrics", headers=auth()).text
        values = {}
        for line in text.splitlines():
            if line.startswith(("mmspeech_batch_size_sum", "mmspeech_batch_size_count")):
                name, value = line.split()
                values[name] = float(value)
        return values.get("mmspeech_batch_size_sum", 0.0), values.get(
            "mmspeech_batch_size_count", 0.0
        )

    def one(_: int) -> str:
        response = httpx.post(
            live.url + "/v1/audio/transcriptions",
            headers=auth(),
            files={"file": ("clip.wav", clip.read_bytes(), "audio/wav")},
            data={"language": "fra", "model": "whisper-1"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["text"])

    total0, calls0 = before()
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(one, range(8)))
    total1, calls1 = before()
    assert texts == [expected["fra"].text] * 8
    assert total1 - total0 == 8
    assert calls1 - calls0 < 8  # at least two requests shared a forward


def test_openapi_document_lists_the_endpoints(live):
    document = httpx.get(live.url + "/openapi.json", headers=auth()).json()
    paths = document["paths"]
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/audio/speech",
                 "/v1/audio/language", "/v1/models", "/health", "/metrics"):  # fmt: skip
        assert path in paths
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}]
    assert paths["/health"]["get"]["security"] == []
    assert set(paths["/v1/audio/speech"]["post"]["responses"]) >= {
        "200",
        "400",
        "401",
        "413",
        "429",
    }
    form = document["components"]["schemas"]
    transcription_form = next(v for k, v in form.items() if "transcriptions" in k)
    assert "timestamp_granularities[]" in transcription_form["properties"]
    assert form["SpeechRequest"]["properties"]["response_format"]["enum"] == [
        "wav", "flac", "pcm", "mp3", "opus"
    ]  # fmt: skip
