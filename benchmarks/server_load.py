"""Load test of ``mmspeech serve`` on loopback: concurrent clients, mixed languages, tiny models.

Starts the server in its own process (once with micro-batching, once without), sends the same
requests from ``--clients`` concurrent clients, and reports throughput, p50/p99 latency, status
codes and the server's resident memory over the run. The tiny checkpoints come from the test
suite's builders (transformers is needed to make them, as for the tests).

    .venv/bin/python benchmarks/server_load.py [--clients 16] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
LANGUAGES = ("eng", "fra", "deu")


def clip(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    waveform = (0.1 * rng.standard_normal(int(16_000 * seconds))).astype(np.float32)
    soundfile.write(buffer, waveform, 16_000, format="WAV")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``python -m mmspeech.server`` in a child process."""

    def __init__(self, models: Path, max_batch: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "mmspeech.server", "--models-dir", str(models),
                   "--default-asr", "mms-tiny-all", "--port", str(self.port),
                   "--max-batch", str(max_batch), "--batch-wait-ms", "10",
                   "--max-queue", "64", "--log-level", "warning"]  # fmt: skip
        # one intra-op thread: the 2-core machine is shared, and batching is what is compared
        self.process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def wait_ready(self, httpx: Any) -> None:
        for _ in range(600):
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


async def run_load(url: str, clients: int, requests: int, clips: list[bytes]) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            language = LANGUAGES[index % len(LANGUAGES)]
            files = {"file": ("clip.wav", clips[index % len(clips)], "audio/wav")}
            started = time.perf_counter()
            response = await http.post(
                url + "/v1/audio/transcriptions",
                files=files,
                data={"model": "whisper-1", "language": language},
            )
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "elapsed": elapsed,
        "throughput": requests / elapsed,
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
        "statuses": dict(statuses),
    }


def measure(models: Path, max_batch: int, clients: int, requests: int) -> dict[str, Any]:
    import httpx

    server = Server(models, max_batch)
    try:
        server.wait_ready(httpx)
        clips = [clip(seconds, seed) for seed, seconds in enumerate((0.5, 0.75, 1.0, 0.6, 0.9))]
        for language in LANGUAGES:  # load the model and every adapter before timing
            httpx.post(server.url + "/v1/audio/transcriptions", timeout=120,
                       files={"file": ("c.wav", clips[0], "audio/wav")},
                       data={"language": language})  # fmt: skip
        samples: list[float] = [rss_mb(server.process.pid)]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                samples.append(rss_mb(server.process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = asyncio.run(run_load(server.url, clients, requests, clips))
        done.set()
        sampler.join()
        samples.append(rss_mb(server.process.pid))
        metrics = httpx.get(server.url + "/metrics").text
        batch = {
            line.split()[0]: float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("mmspeech_batch_size_")
        }
        result["mean_batch"] = batch["mmspeech_batch_size_sum"] / batch["mmspeech_batch_size_count"]
        result["rss_start"], result["rss_peak"], result["rss_end"] = (
            samples[0], max(samples), samples[-1],
        )  # fmt: skip
        return result
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    import torch  # noqa: F401  (conftest needs it; imported here to fail early if missing)
    from conftest import build_server_models

    with tempfile.TemporaryDirectory() as directory:
        models = build_server_models(Path(directory))
        rows = []
        for label, max_batch in (("on (max 8, wait 10 ms)", 8), ("off", 1)):
            result = measure(models, max_batch, args.clients, args.requests)
            rows.append((label, result))
            print(f"micro-batching {label}: {result}", file=sys.stderr)
    print(
        f"\n{args.clients} clients, {args.requests} transcription requests (0.5-1 s clips, "
        f"eng/fra/deu in turn), tiny checkpoints, {os.cpu_count()} CPUs\n"
    )
    print(
        "| micro-batching | req/s | p50 ms | p99 ms | mean batch | status codes "
        "| RSS MB start / peak / end |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, r in rows:
        print(f"| {label} | {r['throughput']:.1f} | {1000 * r['p50']:.0f} | {1000 * r['p99']:.0f} "
              f"| {r['mean_batch']:.2f} | {r['statuses']} | {r['rss_start']:.0f} / "
              f"{r['rss_peak']:.0f} / {r['rss_end']:.0f} |")  # fmt: skip
    server_errors = sum(n for r in (r for _, r in rows) for code, n in r["statuses"].items()
                        if code >= 500)  # fmt: skip
    return 1 if server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
