"""``mmspeech transcribe -`` reads a live stream from a pipe (a WAV stream, or raw PCM) and prints
each final segment when it is decided; ``mmspeech listen`` without its extra says what to
install."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
from conftest import espeak

from mmspeech.cli import main
from mmspeech.demo import demo_checkpoint
from mmspeech.errors import CheckpointNotFoundError

TEXTS = ["hello how are you today my friend", "we will meet again tomorrow morning"]


@pytest.fixture(scope="module")
def model() -> str:
    try:
        return str(demo_checkpoint("asr"))
    except CheckpointNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    pause = np.zeros(12_000, dtype=np.float32)
    return np.concatenate([piece for text in TEXTS for piece in (espeak(text), pause)])


def pipe(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "mmspeech", "transcribe", "-", *args],
        input=data, capture_output=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_a_wav_stream_piped_in_prints_one_line_per_final_segment(model, speech):
    buffer = io.BytesIO()
    sf.write(buffer, speech, 16_000, format="WAV", subtype="PCM_16")
    wav = bytearray(buffer.getvalue())
    data_at = wav.index(b"data") + 4
    wav[data_at : data_at + 4] = b"\xff\xff\xff\xff"  # as ffmpeg writes to a pipe: size unknown
    done = pipe(["--model", model, "-l", "eng", "-q"], bytes(wav))
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 2  # one per sentence: the pause between them ends the first
    assert jiwer.cer(" ".join(TEXTS), " ".join(lines)) < 0.35


def test_raw_pcm_at_another_rate_and_json_at_the_end(model, speech):
    import soxr

    audio8k = soxr.resample(speech, 16_000, 8_000)
    raw = (np.clip(audio8k, -1, 1) * 32767).astype("<i2").tobytes()
    args = ["--model", model, "-l", "eng", "--format", "s16le", "--rate", "8000", "-f", "json"]
    done = pipe(args, raw)
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert result["language"] == "eng"
    assert result["duration"] == pytest.approx(len(speech) / 16_000, abs=0.01)
    assert [s["id"] for s in result["segments"]] == [0, 1]
    assert jiwer.cer(" ".join(TEXTS), result["text"]) < 0.45


def test_stdin_errors_are_one_line(model, capsys):
    done = pipe(["--model", model, "-l", "eng", "-q"], b"not a wav stream at all")
    assert done.returncode == 1
    assert done.stderr.decode().strip().splitlines() == [
        "error: standard input: expected a WAV stream (RIFF/WAVE header); for raw PCM pass "
        "--format s16le (or f32le) and --rate."
    ]
    assert main(["transcribe", "-", "other.wav", "--model", model]) == 2
    assert "cannot be mixed" in capsys.readouterr().err


def test_listen_without_sounddevice_names_the_extra(model, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as when not installed
    assert main(["listen", "--model", model, "-l", "eng"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: mmspeech listen needs sounddevice: pip install 'mmspeech[live]'."]
