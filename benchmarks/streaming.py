"""Live transcription: accuracy against offline, latency and capacity, per compute type.

    accuracy   (demo checkpoint only) espeak-ng English sentences with pauses, spoken by
               four voices, transcribed offline (``asr.transcribe``) and as a stream fed in
               random chunks (``asr.stream``): CER of each against the sentences over all four
               voices (and per voice), and of the stream against offline. Four voices, not one:
               one voice's 250 characters move the CER by a point with any change of context
               (the second 2026-12-06 demo checkpoints at the defaults: 22.1 / 23.2 % offline /
               stream for the first voice, 18.6 / 16.7 for the second, 25.9 / 24.3 for the third)
    latency    one stream fed 0.1 s chunks, alone on ``--threads`` torch threads: time from a
               chunk's arrival (``feed`` called) to its events being returned, for the chunks
               that ran the model (they carry the partial text); p50 / p95 / max
    capacity   N streams paced in real time by ``--threads`` worker processes (one torch thread
               each, the streams dealt round-robin): every 0.1 s each stream is given the audio
               that arrived. A trial falls behind when a worker's compute exceeds the audio's
               duration or the lag at the end exceeds 1 s. N is searched (1, 2, 4, ... up to
               ``--max-streams``, then bisected): reported is the largest N that keeps up (0:
               not even one stream runs in real time), with every trial's busiest-worker
               fraction and lag, and the compute per second of audio per stream

Architectures: ``demo`` (the bundled demo checkpoint) or ``mms-1b-all`` (the full architecture
with random weights, built once by ``benchmarks/asr_forward.py``'s builder into ``--model-dir``
or a temporary directory, with a 154-character vocabulary; ``--layers`` keeps fewer blocks for
a quick run). Each compute type in ``--types`` loads the checkpoint in worker processes of its
own (one for the latency run, ``--threads`` for the capacity search, which stay up for the
whole search); the parent loads only the demo model, for the accuracy run.

Usage:
    python benchmarks/streaming.py [--seconds 12] [--max-streams 16] [--out-json F]
    python benchmarks/streaming.py --architecture mms-1b-all \\
        --types float32,int8,bfloat16,int8_bfloat16 --threads 2 --seconds 12 --max-streams 16
        [--step 0.5] [--layers 48] [--model-dir D]
    python benchmarks/streaming.py --architecture mms-1b-all --layers 2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from asr_forward import MMS_1B_ALL, build

SAMPLE_RATE = 16_000
CHUNK_S = 0.1  # audio per arrival (a microphone or a socket delivers small blocks)
START_MARGIN_S = 1.0  # a capacity trial starts this long after it is announced
TEXTS = [
    "hello how are you today my friend",
    "the weather is nice and the sun is shining",
    "we will meet again tomorrow morning at the station",
    "please close the door when you leave the room",
    "she bought three apples and a loaf of bread",
    "the train to the city leaves at seven o clock",
]


ACCURACY_VOICES = ("en", "en-us", "en+f3", "en-gb-x-rp+m3")  # espeak-ng voices and variants


def espeak(text: str, voice: str = "en") -> np.ndarray:
    import io

    import soundfile as sf
    import soxr

    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True,
                         check=True).stdout  # fmt: skip
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)


def speech(voice: str = "en") -> np.ndarray:
    pause = np.zeros(int(0.8 * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([piece for text in TEXTS for piece in (espeak(text, voice), pause)])


def build_random_checkpoint(model_dir: Path, layers: int) -> None:
    """mms-1b-all with random weights (asr_forward.py's builder) and a vocabulary to decode."""
    build(model_dir, layers)
    from mmspeech.processing.ctc_tokenizer import Wav2Vec2CTCTokenizer
    from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor.from_dict({"do_normalize": True}).save_pretrained(model_dir)  # MMS's

    size = MMS_1B_ALL["vocab_size"]
    tokens = ["<pad>", "<s>", "</s>", "<unk>", "|"]
    tokens += [chr(ord("a") + i % 26) + ("" if i < 26 else str(i)) for i in range(size - 5)]
    Wav2Vec2CTCTokenizer({t: i for i, t in enumerate(tokens)}).save_pretrained(model_dir)


# -- worker processes ---------------------------------------------------------------------------


def load(model: str, compute_type: str) -> Any:
    from mmspeech import load_asr

    return load_asr(model, device="cpu", compute_type=compute_type)


def stream(asr: Any, step_s: float) -> Any:
    return asr.stream("eng" if asr.languages else None, step_s=step_s)


def worker(model: str, compute_type: str, step_s: float, threads: int, commands: Any,
           answers: Any) -> None:  # fmt: skip
    """Load once, then answer ``("latency",)`` and ``("capacity", n, seconds, start)`` commands
    until ``None``."""
    import torch

    torch.set_num_threads(threads)
    asr = load(model, compute_type)
    audio = speech()
    answers.put({"loaded": True})
    for command in iter(commands.get, None):
        if command[0] == "latency":
            answers.put(latency(asr, audio, step_s))
        else:
            answers.put(paced(asr, audio, step_s, *command[1:]))


def latency(asr: Any, audio: np.ndarray, step_s: float) -> dict[str, float]:
    live = stream(asr, step_s)
    chunk = int(CHUNK_S * SAMPLE_RATE)
    times = []
    for i in range(0, len(audio), chunk):
        done = live._done
        start = time.perf_counter()
        live.feed(audio[i : i + chunk])
        if live._done != done:  # this chunk completed a step: the model ran
            times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "runs": len(ms)}  # fmt: skip


def paced(asr: Any, audio: np.ndarray, step_s: float, streams: int, seconds: float,
          start_at: float) -> dict[str, Any]:  # fmt: skip
    """Feed ``streams`` streams in real time from ``start_at``; report lags and compute."""
    audio = np.tile(audio, int(np.ceil(seconds * SAMPLE_RATE / len(audio))))
    audio = audio[: int(seconds * SAMPLE_RATE)]
    live = [stream(asr, step_s) for _ in range(streams)]
    chunk = int(CHUNK_S * SAMPLE_RATE)
    lag = busy = 0.0
    arrival = start_at
    while time.time() < start_at:
        time.sleep(0.01)
    for k, i in enumerate(range(0, len(audio), chunk)):
        arrival = start_at + (k + 1) * CHUNK_S  # the chunk is complete at this time
        now = time.time()
        if now < arrival:
            time.sleep(arrival - now)
        began = time.perf_counter()
        for one in live:
            one.feed(audio[i : i + chunk])
            lag = max(lag, time.time() - arrival)
        busy += time.perf_counter() - began
    return {"max_lag_s": lag, "last_lag_s": time.time() - arrival, "busy_s": busy,
            "audio_s": seconds * streams, "busy_fraction": busy / seconds}  # fmt: skip


class Workers:
    """``count`` worker processes holding one compute type's model, ``threads`` torch threads
    each (OpenMP's pool is sized when a process starts: raising torch's threads later made
    int8 forwards 10x slower, so each setting gets its own processes)."""

    def __init__(self, count: int, model: str, compute_type: str, step_s: float, threads: int):
        context = multiprocessing.get_context("spawn")
        self.channels = [(context.Queue(), context.Queue()) for _ in range(count)]
        self.processes = [
            context.Process(target=worker, args=(model, compute_type, step_s, threads, *channel))
            for channel in self.channels
        ]
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the children start with it
        for process in self.processes:
            process.start()
        for index in range(count):
            self.receive(index)  # loaded

    def receive(self, index: int) -> dict[str, Any]:
        """The next answer of worker ``index``; exits if any worker died."""
        while True:
            try:
                answer: dict[str, Any] = self.channels[index][1].get(timeout=5)
                return answer
            except queue.Empty:
                if any(process.exitcode not in (None, 0) for process in self.processes):
                    self.close()
                    raise SystemExit("a worker process failed (its traceback is above)") from None

    def latency(self) -> dict[str, float]:
        self.channels[0][0].put(("latency",))
        return self.receive(0)

    def trial(self, streams: int, seconds: float) -> dict[str, Any]:
        shares = [streams // len(self.channels) + (p < streams % len(self.channels))
                  for p in range(len(self.channels))]  # fmt: skip
        start_at = time.time() + START_MARGIN_S
        used = [(index, n) for index, n in enumerate(shares) if n]
        for index, n in used:
            self.channels[index][0].put(("capacity", n, seconds, start_at))
        results = [self.receive(index) for index, _ in used]
        compute = sum(r["busy_s"] for r in results) / sum(r["audio_s"] for r in results)
        busy = max(r["busy_fraction"] for r in results)
        last_lag = max(r["last_lag_s"] for r in results)
        return {
            "streams": streams,
            "max_lag_s": max(r["max_lag_s"] for r in results),
            "last_lag_s": last_lag,
            "busiest_worker_fraction": busy,
            # behind: a worker needs more than the audio's duration, or the lag kept growing
            "fell_behind": busy > 1.0 or last_lag > 1.0,
            "compute_s_per_audio_s_per_stream": compute,
        }

    def close(self) -> None:
        for commands, _ in self.channels:
            commands.put(None)
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.terminate()  # a worker of ours, by its own handle


def capacity(workers: Workers, seconds: float, max_streams: int) -> dict[str, Any]:
    """The largest number of streams (≤ ``max_streams``) that keeps up, by doubling then
    bisection; every trial is reported."""
    trials: list[dict[str, Any]] = []

    def keeps_up(n: int) -> bool:
        trials.append(workers.trial(n, seconds))
        print(f"  {n:3d} streams: busiest worker {trials[-1]['busiest_worker_fraction']:.2f}, "
              f"lag {trials[-1]['max_lag_s']:.2f} s", file=sys.stderr, flush=True)  # fmt: skip
        return not trials[-1]["fell_behind"]

    good, bad, n = 0, 0, 1
    while True:  # double until one falls behind or max_streams keeps up
        if not keeps_up(n):
            bad = n
            break
        good = n
        if n == max_streams:
            break
        n = min(2 * n, max_streams)
    while bad - good > 1:  # bisect between the last that kept up and the first that did not
        middle = (good + bad) // 2
        if keeps_up(middle):
            good = middle
        else:
            bad = middle
    return {"real_time_streams": good, "trials": trials}


# -- parent ---------------------------------------------------------------------------------------


def accuracy() -> dict[str, Any]:
    """Finals of a stream fed in random chunks against offline transcription (demo model)."""
    import jiwer
    import torch

    from mmspeech.api.streaming import Final

    torch.set_num_threads(1)
    asr = load("demo", "float32")
    reference = " ".join(TEXTS)
    rng = np.random.default_rng(0)
    voices: dict[str, dict[str, Any]] = {}
    for voice in ACCURACY_VOICES:
        audio = speech(voice)
        offline = asr.transcribe(audio, "eng").text
        live = asr.stream("eng")
        events, i = [], 0
        while i < len(audio):
            n = int(rng.integers(160, 16_000))
            events += live.feed(audio[i : i + n])
            i += n
        events += live.finish()
        text = " ".join(e.segment.text for e in events if isinstance(e, Final))
        voices[voice] = {
            "offline_cer": float(jiwer.cer(reference, offline)),
            "stream_cer": float(jiwer.cer(reference, text)),
            "offline_text": offline,
            "stream_text": text,
        }
    references = [reference] * len(voices)
    offline_texts = [v["offline_text"] for v in voices.values()]
    stream_texts = [v["stream_text"] for v in voices.values()]
    return {
        "offline_cer": float(jiwer.cer(references, offline_texts)),
        "stream_cer": float(jiwer.cer(references, stream_texts)),
        "stream_vs_offline_cer": float(jiwer.cer(offline_texts, stream_texts)),
        "voices": voices,
    }


def measure(args: argparse.Namespace, model: str) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(load {os.getloadavg()[0]:.1f})",
        "architecture": args.architecture,
        "threads": args.threads,
        "step_s": args.step,
        "seconds": args.seconds,
        "types": {},
    }
    if args.architecture == "demo":
        report["accuracy"] = accuracy()
    else:
        report["layers"] = json.loads((Path(model) / "config.json").read_text())[
            "num_hidden_layers"
        ]
    for compute_type in args.types:
        print(f"{compute_type}: latency ...", file=sys.stderr, flush=True)
        workers = Workers(1, model, compute_type, args.step, threads=args.threads)
        try:
            result: dict[str, Any] = {"latency_1_stream": workers.latency()}
        finally:
            workers.close()
        print(f"{compute_type}: capacity ...", file=sys.stderr, flush=True)
        workers = Workers(args.threads, model, compute_type, args.step, threads=1)
        try:
            result.update(capacity(workers, args.seconds, args.max_streams))
        finally:
            workers.close()
        report["types"][compute_type] = result
    return report


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{report['architecture']}, step {report['step_s']:g} s, {report['threads']} "
          f"threads, {report['machine']}")  # fmt: skip
    print("\n| compute type | real-time streams | latency p50 / p95 (1 stream) "
          "| compute per audio second per stream |")  # fmt: skip
    print("|---|---|---|---|")
    for compute_type, result in report["types"].items():
        good = [t for t in result["trials"] if not t["fell_behind"]]
        compute = (good or result["trials"])[-1]["compute_s_per_audio_s_per_stream"]
        lat = result["latency_1_stream"]
        print(f"| {compute_type} | {result['real_time_streams']} | {lat['p50_ms']:.0f} / "
              f"{lat['p95_ms']:.0f} ms | {compute:.2f} s |")  # fmt: skip
    if "accuracy" in report:
        acc = report["accuracy"]
        print("\n| voice | CER offline | CER of the stream's finals |")
        print("|---|---|---|")
        for voice, scores in acc["voices"].items():
            print(f"| {voice} | {100 * scores['offline_cer']:.1f} % "
                  f"| {100 * scores['stream_cer']:.1f} % |")  # fmt: skip
        print(f"| all | {100 * acc['offline_cer']:.1f} % | {100 * acc['stream_cer']:.1f} % |")
        print(f"\nstream against offline: {100 * acc['stream_vs_offline_cer']:.1f} % CER")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architecture", choices=("demo", "mms-1b-all"), default="demo")
    parser.add_argument("--layers", type=int, default=MMS_1B_ALL["num_hidden_layers"],
                        help="mms-1b-all: transformer blocks (fewer for a smoke run)")  # fmt: skip
    parser.add_argument("--model-dir", type=Path,
                        help="mms-1b-all: reuse (or build and keep) the checkpoint")  # fmt: skip
    parser.add_argument("--types", default=None,
                        help="compute types, comma-separated (default: float32 for demo; "
                        "float32,int8,bfloat16,int8_bfloat16 for mms-1b-all)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2,
                        help="cores: capacity worker processes, and torch threads of the "
                        "1-stream latency run")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=12.0, help="audio per paced trial")
    parser.add_argument("--max-streams", type=int, default=16)
    parser.add_argument("--step", type=float, default=0.5, help="stream step in seconds")
    parser.add_argument("--out-json", type=Path)
    args = parser.parse_args()
    default_types = (
        "float32" if args.architecture == "demo" else "float32,int8,bfloat16,int8_bfloat16"
    )
    args.types = [t for t in (args.types or default_types).split(",") if t]
    if args.threads < 1 or args.max_streams < 1 or args.layers < 1:
        parser.error("--threads, --max-streams and --layers must be at least 1")
    with tempfile.TemporaryDirectory(prefix="streaming_") as work:
        model = "demo"
        if args.architecture == "mms-1b-all":
            model_dir = args.model_dir or Path(work) / "model"
            if not (model_dir / "config.json").exists():
                build_random_checkpoint(model_dir, args.layers)
            model = str(model_dir)
        report = measure(args, model)
    text = json.dumps(report, indent=2)
    print(text)
    print_table(report)
    if args.out_json:
        args.out_json.write_text(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
