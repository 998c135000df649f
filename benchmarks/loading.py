"""Loading a converted int8 mms-1b-all directory against the float32 checkpoint: time and memory.

The float32 checkpoint is the mms-1b-all architecture with random weights (asr_forward.py's
builder); the int8 one is written from it by ``mmspeech convert --compute-type int8``. Each run
is a fresh process (import, load, then ``--forwards`` forwards of one clip of ``--seconds``
under ``torch.inference_mode()``), the two checkpoints alternating for ``--rounds`` rounds.
Reported per run: import, load, first forward (for int8 it includes packing the weights for
oneDNN), later forwards, load plus first forward, and the process's peak resident memory
(``hwm`` of asr_forward.py's ``memory_gib``: the whole process, weights, torch, activations).

With ``--cold`` the page cache is dropped before every run (``/proc/sys/vm/drop_caches``,
root only), as on a machine's first start: loading then reads the file from disk.

Usage:
    python benchmarks/loading.py [--model-dir D] [--seconds 10] [--rounds 3] [--cold]
        [--threads 2] [--out-json F]
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

from asr_forward import build, memory_gib


def worker(model_dir: str, compute_type: str, seconds: float, forwards: int, threads: int) -> None:
    """One run, in this process: prints one JSON line."""
    started = time.perf_counter()
    import numpy as np
    import torch

    from mmspeech.models.wav2vec2 import Wav2Vec2ForCTC

    torch.set_num_threads(threads)
    report: dict[str, Any] = {"import_s": time.perf_counter() - started}
    begin = time.perf_counter()
    model = Wav2Vec2ForCTC.from_pretrained(model_dir, compute_type=compute_type)
    report["load_s"] = time.perf_counter() - begin
    wave = np.random.default_rng(0).standard_normal(round(seconds * 16_000), dtype=np.float32)
    inputs = torch.from_numpy(wave)[None]
    report["forward_s"] = []
    for _ in range(forwards):
        begin = time.perf_counter()
        with torch.inference_mode():
            model(inputs)
        report["forward_s"].append(time.perf_counter() - begin)
    report["memory_gib"] = memory_gib()
    print(json.dumps(report), flush=True)


def run(model_dir: Path, compute_type: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.cold:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    command = [sys.executable, __file__, "--worker", str(model_dir), compute_type]
    command += ["--seconds", str(args.seconds), "--forwards", str(args.forwards)]
    command += ["--threads", str(args.threads)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="float32 checkpoint (built if missing)")
    parser.add_argument("--int8-dir", type=Path, help="converted int8 dir (written if missing)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--forwards", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each run")
    parser.add_argument("--out-json", type=Path)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        model_dir, compute_type = args.worker
        worker(model_dir, compute_type, args.seconds, args.forwards, args.threads)
        return
    if args.forwards < 1 or args.rounds < 1:
        parser.error("--forwards and --rounds must be at least 1")
    if args.cold and not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        parser.error("--cold drops the page cache: run as root")
    with tempfile.TemporaryDirectory(prefix="loading_") as work:
        float_dir = args.model_dir or Path(work) / "float32"
        int8_dir = args.int8_dir or Path(work) / "int8"
        if not (float_dir / "config.json").exists():
            build(float_dir, 48)
        if not (int8_dir / "config.json").exists():
            subprocess.run([sys.executable, "-m", "mmspeech", "convert", str(float_dir), "-o",
                            str(int8_dir), "--compute-type", "int8"], check=True)  # fmt: skip
        if not args.cold:  # warm means warm from the first run: read both files once
            for directory in (float_dir, int8_dir):
                for path in directory.glob("*.safetensors"):
                    with path.open("rb") as handle:
                        while handle.read(1 << 24):
                            pass
        runs: dict[str, list[dict[str, Any]]] = {"float32": [], "int8": []}
        for _ in range(args.rounds):
            for kind, directory in (("float32", float_dir), ("int8", int8_dir)):
                result = run(directory, kind, args)
                runs[kind].append(result)
                print(kind, json.dumps(result), file=sys.stderr, flush=True)
    cache = "cold page cache" if args.cold else "warm page cache"
    print(f"\n{args.seconds:g} s clip, {args.threads} threads, {cache}, {args.rounds} runs each "
          "(min-max)\n")  # fmt: skip
    print("| checkpoint | load | first forward | load + first forward | later forwards (median) "
          "| peak RSS |")  # fmt: skip
    print("|---|---|---|---|---|---|")

    def span(values: list[float], unit: str = " s") -> str:
        return f"{min(values):.2f}-{max(values):.2f}{unit}"

    for kind, results in runs.items():
        later = [f for r in results for f in r["forward_s"][1:]]
        print(f"| {kind} | {span([r['load_s'] for r in results])} "
              f"| {span([r['forward_s'][0] for r in results])} "
              f"| {span([r['load_s'] + r['forward_s'][0] for r in results])} "
              f"| {statistics.median(later) if later else float('nan'):.2f} s "
              f"| {span([r['memory_gib']['hwm'] for r in results], ' GiB')} |")  # fmt: skip
    if args.out_json:
        settings = {key: str(value) for key, value in vars(args).items()}
        args.out_json.write_text(json.dumps({"settings": settings, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
