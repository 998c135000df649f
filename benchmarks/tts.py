"""Text-to-speech speed and memory: mmspeech's VitsModel against transformers' (the oracle).

Builds the full MMS-TTS architecture (VitsConfig defaults, ~36M parameters) with random weights,
saves it once, then each implementation loads that directory in its own process and synthesises
a 100-character sentence and a 1,000-character paragraph (noise scales at 0, so both produce
the same audio). Prints seconds, real-time factor (seconds of compute per second of audio),
the ratio mmspeech / transformers (< 1: mmspeech is faster), peak RSS per process, and where
mmspeech's time goes (text encoder, duration predictor, flow, HiFi-GAN decoder).

The machine may be shared: the two implementations run alternately for ``--rounds`` rounds
(the order swapped each round), and the ratio reported is the median of the per-round ratios;
the ratio of CPU times (steadier than wall time on a busy machine) is printed too.

    python benchmarks/tts.py [--rounds 3] [--repeats 3] [--threads 2] [--texts both]
                             [--compute-type bfloat16] [--out-json results.json]

``--compute-type`` loads mmspeech's side in that compute type (transformers stays float32).
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
from typing import Any

SENTENCE = "the quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing"
SENTENCE = (SENTENCE + " and more")[:100]
PARAGRAPH = " ".join([SENTENCE] * 10)[:1000]
LETTERS = " abcdefghijklmnopqrstuvwxyz"


def build(directory: str) -> None:
    """Save a random full-size MMS-TTS model with transformers (run in a child process)."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.VitsConfig(vocab_size=len(LETTERS) + 1)
    transformers.VitsModel(config).eval().save_pretrained(directory)


def ids(text: str) -> list[int]:
    """Blank-interleaved ids, as MMS-TTS tokenizers make them (0 = blank)."""
    out = [0]
    for char in text:
        out += [LETTERS.index(char) + 1, 0]
    return out


TEXTS = {"sentence (100 chars)": SENTENCE, "paragraph (1000 chars)": PARAGRAPH}


def worker(
    implementation: str,
    directory: str,
    repeats: int,
    threads: int,
    texts: list[str],
    compute_type: str,
) -> None:
    """Load one implementation, time both texts, print one JSON line (run in a child process)."""
    import resource

    import torch

    torch.set_num_threads(threads)
    if implementation == "mmspeech":
        import mmspeech

        model: Any = mmspeech.VitsModel.from_pretrained(directory, compute_type=compute_type)
    else:
        import transformers

        model = transformers.VitsModel.from_pretrained(directory).eval()
    model.noise_scale = 0.0
    model.noise_scale_duration = 0.0
    stages = time_stages(model) if implementation == "mmspeech" else {}
    results = {}
    for name, text in ((name, TEXTS[name]) for name in texts):
        input_ids = torch.tensor([ids(text)])
        times, cpu_times = [], []
        with torch.inference_mode():
            model(input_ids=input_ids)  # warm-up
            stages.clear()
            for _ in range(repeats):
                start, cpu_start = time.perf_counter(), time.process_time()
                waveform = model(input_ids=input_ids).waveform
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu_start)
        results[name] = {
            "seconds": statistics.median(times),
            "cpu_seconds": statistics.median(cpu_times),  # steadier than wall time when shared
            "audio_seconds": waveform.shape[-1] / model.config.sampling_rate,
            "checksum": float(waveform.abs().sum()),
            "stage_seconds": {stage: total / repeats for stage, total in stages.items()},
        }
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"results": results, "peak_gib": peak_gib}))


def time_stages(model: Any) -> dict[str, float]:
    """Wrap mmspeech's sub-networks so each call adds its wall time to the returned dict."""
    totals: dict[str, float] = {}
    parts = {
        "text encoder": (model.text_encoder, "forward"),
        "duration predictor": (model.duration_predictor, "forward"),
        "flow": (model.flow, "inverse"),
        "HiFi-GAN": (model.decoder, "forward"),
    }
    for stage, (module, method) in parts.items():
        original = getattr(module, method)

        def timed(*args: Any, _stage: str = stage, _original: Any = original, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = _original(*args, **kwargs)
            totals[_stage] = totals.get(_stage, 0.0) + time.perf_counter() - start
            return result

        setattr(module, method, timed)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each side")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per text per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", choices=["both", "sentence", "paragraph"], default="both")
    parser.add_argument("--compute-type", default="float32", help="mmspeech's compute type")
    parser.add_argument("--out-json")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        implementation, directory = args.worker
        if implementation == "build":
            build(directory)
        else:
            texts = [n for n in TEXTS if args.texts == "both" or n.startswith(args.texts)]
            worker(implementation, directory, args.repeats, args.threads, texts, args.compute_type)
        return
    here = os.path.abspath(__file__)
    runs: dict[str, list[dict[str, Any]]] = {"mmspeech": [], "transformers": []}
    with tempfile.TemporaryDirectory() as directory:
        subprocess.run([sys.executable, here, "--worker", "build", directory], check=True)
        for round_index in range(args.rounds):
            order = ["mmspeech", "transformers"][:: 1 if round_index % 2 == 0 else -1]
            for implementation in order:
                command = [sys.executable, here, "--worker", implementation, directory]
                command += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
                command += ["--texts", args.texts, "--compute-type", args.compute_type]
                output = subprocess.run(command, check=True, capture_output=True, text=True)
                runs[implementation].append(json.loads(output.stdout.strip().splitlines()[-1]))
    print(f"mmspeech in compute type {args.compute_type}, transformers in float32")
    report(runs)
    if args.out_json:
        with open(args.out_json, "w", encoding="utf-8") as handle:
            json.dump(runs, handle, indent=2)


def report(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Print medians over rounds: times, ratio, real-time factors, stages, peak memory."""
    ours, theirs = runs["mmspeech"], runs["transformers"]
    print(f"{'text':24} {'mms s':>7} {'hf s':>7} {'ratio':>6} {'speedup':>7} {'audio s':>8} "
          f"{'mms RTF':>8} {'hf RTF':>7}  per-round ratios")  # fmt: skip
    for name in ours[0]["results"]:
        mine = statistics.median(run["results"][name]["seconds"] for run in ours)
        ref = statistics.median(run["results"][name]["seconds"] for run in theirs)
        ratios = [
            a["results"][name]["seconds"] / b["results"][name]["seconds"]
            for a, b in zip(ours, theirs, strict=True)
        ]
        ratio = statistics.median(ratios)
        audio = ours[0]["results"][name]["audio_seconds"]
        print(
            f"{name:24} {mine:7.3f} {ref:7.3f} {ratio:6.2f} {1 / ratio:6.2f}x {audio:8.2f} "
            f"{mine / audio:8.3f} {ref / audio:7.3f}  {' '.join(f'{r:.2f}' for r in ratios)}"
        )
        cpu_ratios = [
            a["results"][name]["cpu_seconds"] / b["results"][name]["cpu_seconds"]
            for a, b in zip(ours, theirs, strict=True)
        ]
        print(f"  CPU-time ratio {statistics.median(cpu_ratios):.2f} (per round: "
              f"{' '.join(f'{r:.2f}' for r in cpu_ratios)})")  # fmt: skip
        if abs(audio - theirs[0]["results"][name]["audio_seconds"]) > 1e-9:
            print(f"  warning: audio lengths differ ({audio} vs {theirs[0]['results'][name]})")
        stages = ours[0]["results"][name]["stage_seconds"]
        medians = {
            stage: statistics.median(run["results"][name]["stage_seconds"][stage] for run in ours)
            for stage in stages
        }
        print(
            "  mmspeech stages (ms): " + ", ".join(f"{k} {v * 1e3:.0f}" for k, v in medians.items())
        )
    peak_ours = max(run["peak_gib"] for run in ours)
    peak_theirs = max(run["peak_gib"] for run in theirs)
    print(f"peak RSS: mmspeech {peak_ours:.2f} GiB, transformers {peak_theirs:.2f} GiB")


if __name__ == "__main__":
    main()
