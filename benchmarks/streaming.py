"""Live transcription with the demo checkpoint: accuracy against offline, latency, capacity.

    accuracy   espeak-ng English sentences with pauses, transcribed offline
               (``asr.transcribe``) and as a stream fed in random chunks (``asr.stream``):
               CER of each against the sentences, and of the stream against offline
    latency    one stream fed 0.1 s chunks: time from a chunk's arrival (``feed`` called) to its
               events being returned, for the chunks that ran the model (they carry the partial
               text); p50 / p95 / max
    capacity   N streams paced in real time by 2 worker processes (one torch thread each, the
               streams dealt round-robin): every 0.1 s each stream is given the audio that
               arrived; the streams fall behind when a worker's compute exceeds the audio's
               duration or the lag at the end exceeds 1 s. Reported: the largest lag (the latency
               of the last stream of a worker's round), the busiest worker's compute as a
               fraction of real time, and the compute per second of audio per stream

Usage:
    python benchmarks/streaming.py [--streams 8] [--seconds 12] [--out-json F]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
CHUNK_S = 0.1  # audio per arrival (a microphone or a socket delivers small blocks)
TEXTS = [
    "hello how are you today my friend",
    "the weather is nice and the sun is shining",
    "we will meet again tomorrow morning at the station",
    "please close the door when you leave the room",
    "she bought three apples and a loaf of bread",
    "the train to the city leaves at seven o clock",
]


def espeak(text: str) -> np.ndarray:
    import io

    import soundfile as sf
    import soxr

    wav = subprocess.run(["espeak-ng", "-v", "en", "--stdout", text], capture_output=True,
                         check=True).stdout  # fmt: skip
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)


def speech() -> np.ndarray:
    pause = np.zeros(int(0.8 * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([piece for text in TEXTS for piece in (espeak(text), pause)])


def load() -> Any:
    import torch

    from mmspeech import load_asr

    torch.set_num_threads(1)
    return load_asr("demo", device="cpu")


def accuracy(asr: Any, audio: np.ndarray) -> dict[str, Any]:
    import jiwer

    from mmspeech.api.streaming import Final

    reference = " ".join(TEXTS)
    offline = asr.transcribe(audio, "eng").text
    stream = asr.stream("eng")
    rng = np.random.default_rng(0)
    events, i = [], 0
    while i < len(audio):
        n = int(rng.integers(160, 16_000))
        events += stream.feed(audio[i : i + n])
        i += n
    events += stream.finish()
    text = " ".join(e.segment.text for e in events if isinstance(e, Final))
    return {
        "offline_cer": float(jiwer.cer(reference, offline)),
        "stream_cer": float(jiwer.cer(reference, text)),
        "stream_vs_offline_cer": float(jiwer.cer(offline, text)),
        "offline_text": offline,
        "stream_text": text,
    }


def latency(asr: Any, audio: np.ndarray) -> dict[str, float]:
    stream = asr.stream("eng")
    chunk = int(CHUNK_S * SAMPLE_RATE)
    times = []
    for i in range(0, len(audio), chunk):
        done = stream._done
        start = time.perf_counter()
        stream.feed(audio[i : i + chunk])
        if stream._done != done:  # this chunk completed a step: the model ran
            times.append(time.perf_counter() - start)
    stream.finish()
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "runs": len(ms)}  # fmt: skip


def worker(streams: int, seconds: float, start_at: float, out: Any) -> None:
    """Feed ``streams`` streams in real time from ``start_at``; report lags and compute."""
    asr = load()
    audio = speech()
    audio = np.tile(audio, int(np.ceil(seconds * SAMPLE_RATE / len(audio))))
    audio = audio[: int(seconds * SAMPLE_RATE)]
    live = [asr.stream("eng") for _ in range(streams)]
    chunk = int(CHUNK_S * SAMPLE_RATE)
    lag = busy = 0.0
    while time.time() < start_at:
        time.sleep(0.01)
    for k, i in enumerate(range(0, len(audio), chunk)):
        arrival = start_at + (k + 1) * CHUNK_S  # the chunk is complete at this time
        now = time.time()
        if now < arrival:
            time.sleep(arrival - now)
        began = time.perf_counter()
        for stream in live:
            stream.feed(audio[i : i + chunk])
            lag = max(lag, time.time() - arrival)
        busy += time.perf_counter() - began
    out.put({"max_lag_s": lag, "last_lag_s": time.time() - arrival, "busy_s": busy,
             "audio_s": seconds * streams, "busy_fraction": busy / seconds})  # fmt: skip


def capacity(streams: int, seconds: float, processes: int = 2) -> dict[str, Any]:
    queue: Any = multiprocessing.get_context("spawn").Queue()
    start_at = time.time() + 20.0  # time to load the model in each process
    shares = [streams // processes + (p < streams % processes) for p in range(processes)]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=worker, args=(n, seconds, start_at, queue))
               for n in shares if n]  # fmt: skip
    for process in workers:
        process.start()
    results = [queue.get() for _ in workers]
    for process in workers:
        process.join()
    compute = sum(r["busy_s"] for r in results) / sum(r["audio_s"] for r in results)
    busy = max(r["busy_fraction"] for r in results)
    last_lag = max(r["last_lag_s"] for r in results)
    return {
        "streams": streams,
        "processes": len(workers),
        "max_lag_s": max(r["max_lag_s"] for r in results),
        "last_lag_s": last_lag,
        "busiest_worker_fraction": busy,
        # behind: a worker needs more than the audio's duration, or the lag kept growing
        "fell_behind": busy > 1.0 or last_lag > 1.0,
        "compute_s_per_audio_s_per_stream": compute,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0, help="audio per paced stream")
    parser.add_argument("--out-json")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    asr = load()
    audio = speech()
    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(load {os.getloadavg()[0]:.1f})",
        "audio_s": len(audio) / SAMPLE_RATE,
        "accuracy": accuracy(asr, audio),
        "latency": latency(asr, audio),
        "capacity": capacity(args.streams, args.seconds),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out_json:
        with open(args.out_json, "w") as handle:
            handle.write(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
