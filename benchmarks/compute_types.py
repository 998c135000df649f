"""Speed, memory and accuracy of each compute type on the mms-1b-all architecture.

The architecture is built once with random weights (by transformers, as in asr_forward.py) and
saved to a temporary directory. Every implementation — transformers in float32 (the baseline;
also float16 on CUDA) and mmspeech in each compute type asked for — then loads it in its own
subprocess, so its memory is its own. The workers take turns, one forward at a time, the order
reversed each round, so that load from other programs slows all of them alike.

Reported per workload (clips of random normal audio, 16 kHz) and implementation: the median
forward time, its ratio to transformers float32, the peak memory (CPU: resident set size, with
the high-water mark reset before each workload; CUDA: torch's peak allocation), and, against
mmspeech float32 on the same input: cosine similarity of the logits and the share of frames
whose argmax agrees (random weights: a strict test, nothing is learnt to be robust).

Usage:
    python benchmarks/compute_types.py [--device cpu|cuda] [--types int8,bfloat16,...]
        [--seconds 10,30] [--repeats 3] [--layers N] [--threads 2] [--out-json F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from asr_forward import MMS_1B_ALL, Worker, memory_gib, reset_peak_rss

SAMPLE_RATE = 16_000
BASELINE = "transformers:float32"
REFERENCE = "mmspeech:float32"


def load(implementation: str, model_dir: Path, device: str) -> Any:
    import torch

    library, compute_type = implementation.split(":")
    if library == "mmspeech":
        from mmspeech.models.wav2vec2 import Wav2Vec2ForCTC

        return Wav2Vec2ForCTC.from_pretrained(model_dir, device=device, compute_type=compute_type)
    import transformers

    dtype = getattr(torch, compute_type)
    model: Any = transformers.Wav2Vec2ForCTC.from_pretrained(model_dir, dtype=dtype)
    return model.to(device).eval()


def serve(implementation: str, model_dir: Path, device: str, threads: int, out: Path) -> None:
    """Worker: load, answer one line, then run one forward per request line on stdin."""
    import torch

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    started = time.perf_counter()
    model = load(implementation, model_dir, device)
    with torch.no_grad():  # page the weights in, so forwards measure forwards
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.float().sum()
    if cuda:
        torch.cuda.synchronize()
    loaded = {"load_seconds": time.perf_counter() - started, "memory": memory_gib()}
    if cuda:
        loaded["cuda_gib"] = torch.cuda.memory_allocated() / 2**30
    answers.write(json.dumps(loaded) + "\n")
    dtype = next(model.parameters()).dtype
    current = None
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        seconds = float(request["seconds"])
        if seconds != current:
            rng = np.random.default_rng(0)
            wave = rng.standard_normal(round(seconds * SAMPLE_RATE), dtype=np.float32)
            batch = np.stack([np.roll(wave, 1000 * i) for i in range(int(request["batch"]))])
            inputs = torch.from_numpy(batch).to(device, dtype)
            current = seconds
            reset_peak_rss()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
        if cuda:
            torch.cuda.synchronize()
        begin = time.perf_counter()
        with torch.inference_mode():
            logits = model(inputs).logits
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - begin
        name = out / f"{implementation.replace(':', '-')}-{seconds:g}.npy"
        if request.get("save"):
            np.save(name, logits[0].float().cpu().numpy())
        answer = {"seconds": elapsed, "peak_rss_gib": memory_gib()["ru_maxrss"]}
        if cuda:
            answer["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
        answers.write(json.dumps({**answer, "logits": str(name)}) + "\n")


def start_worker(
    implementation: str, args: argparse.Namespace, model_dir: Path, out: Path
) -> Worker:
    """``implementation`` in its own process (asr_forward.py's worker protocol)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", implementation,
               "--model-dir", str(model_dir), "--out-dir", str(out), "--device", args.device,
               "--threads", str(args.threads)]  # fmt: skip
    return Worker(implementation, command)


def compare(a_file: str, b_file: str) -> tuple[float, float]:
    """(cosine similarity, argmax agreement) of two (T, V) logits files."""
    a, b = np.load(a_file).astype(np.float64), np.load(b_file).astype(np.float64)
    cosine = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    return cosine, float((a.argmax(-1) == b.argmax(-1)).mean())


def run(args: argparse.Namespace, model_dir: Path, out: Path) -> dict[str, Any]:
    implementations = [BASELINE, REFERENCE, *(f"mmspeech:{t}" for t in args.types)]
    if args.device.startswith("cuda"):
        implementations.insert(1, "transformers:float16")
    workers: dict[str, Worker] = {}
    times: dict[str, dict[float, list[dict[str, Any]]]] = {i: {} for i in implementations}
    try:
        for name in implementations:
            print(f"loading {name} ...", file=sys.stderr, flush=True)
            workers[name] = start_worker(name, args, model_dir, out)
        for seconds in args.seconds:
            order = list(implementations)
            for repeat in range(args.repeats + 1):  # 0: warm-up, logits saved
                for name in order:
                    answer = workers[name].request(
                        seconds=seconds, batch=args.batch, save=repeat == 0
                    )
                    times[name].setdefault(seconds, []).append(answer)
                    print(f"  {seconds:g} s {name:<24} {answer['seconds']:8.3f} s",
                          file=sys.stderr, flush=True)  # fmt: skip
                order.reverse()
    finally:
        for worker in workers.values():
            worker.close()
    rows = []
    for seconds in args.seconds:
        base = statistics.median(a["seconds"] for a in times[BASELINE][seconds][1:])
        for name in implementations:
            answers = times[name][seconds]
            median = statistics.median(a["seconds"] for a in answers[1:])
            cosine, agreement = compare(
                answers[0]["logits"], times[REFERENCE][seconds][0]["logits"]
            )
            row = {"seconds_audio": seconds, "implementation": name, "seconds": median,
                   "fastest": min(a["seconds"] for a in answers[1:]),
                   "speedup_vs_transformers_float32": base / median,
                   "peak_rss_gib": max(a["peak_rss_gib"] for a in answers),
                   "cosine_vs_mmspeech_float32": cosine, "argmax_agreement": agreement,
                   "load_seconds": workers[name].loaded["load_seconds"],
                   "loaded_rss_gib": workers[name].loaded["memory"]["rss"]}  # fmt: skip
            if "peak_cuda_gib" in answers[0]:
                row["peak_cuda_gib"] = max(a["peak_cuda_gib"] for a in answers)
                row["loaded_cuda_gib"] = workers[name].loaded["cuda_gib"]
            rows.append(row)
    return {"device": args.device, "threads": args.threads, "batch": args.batch, "rows": rows}


def print_table(report: dict[str, Any]) -> None:
    cuda = report["device"].startswith("cuda")
    memory = "peak CUDA GiB" if cuda else "peak RSS GiB"
    print(f"\nbatch of {report['batch']}, device {report['device']}")
    print(f"\n| audio | implementation | time (s) | speedup vs transformers fp32 | {memory} "
          "| logit cosine | argmax agreement |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for row in report["rows"]:
        peak = row["peak_cuda_gib"] if cuda else row["peak_rss_gib"]
        print(f"| {row['seconds_audio']:g} s | {row['implementation']} | {row['seconds']:.3f} "
              f"| {row['speedup_vs_transformers_float32']:.2f}x | {peak:.2f} "
              f"| {row['cosine_vs_mmspeech_float32']:.5f} "
              f"| {100 * row['argmax_agreement']:.1f} % |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--types", default="int8,bfloat16,int8_bfloat16")
    parser.add_argument("--seconds", default="10,30")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1, help="clips per forward (same length)")
    parser.add_argument("--layers", type=int, default=MMS_1B_ALL["num_hidden_layers"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model-dir", type=Path, help="reuse (or keep) the checkpoint here")
    parser.add_argument("--out-json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(args.worker, args.model_dir, args.device, args.threads, args.out_dir)
        return
    args.types = [t for t in args.types.split(",") if t]
    args.seconds = [float(s) for s in args.seconds.split(",")]
    with tempfile.TemporaryDirectory(prefix="compute_types_") as work:
        model_dir = args.model_dir or Path(work) / "model"
        if not (model_dir / "config.json").exists():
            print(f"building {args.layers} layers in {model_dir} ...", file=sys.stderr)
            build = Path(__file__).with_name("asr_forward.py")  # in its own process: the
            command = [sys.executable, str(build), "--worker", "build"]  # parent stays small
            command += ["--model-dir", str(model_dir), "--layers", str(args.layers)]
            subprocess.run(command, check=True)
        report = run(args, model_dir, Path(work))
    print_table(report)
    if args.out_json:
        args.out_json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
