"""The server's reliability limits (issue 20): decode bombs, failed loads, stalled and abandoned
clients, timeouts. Each test states the limit it holds the server to."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
    # the 1 Hz files and the long FLAC are refused from their header; the FLACs without a length
    # are decoded up to the limit, then refused
    assert report["statuses"] == [400, 400, 413, 413, 413], report
    assert report["grew_mb"] < 300, report
