"""Text-to-speech speed and memory: mmspeech's VitsModel against transformers' (the oracle).

Builds the full MMS-TTS architecture (VitsConfig defaults, ~36M parameters) with random weights,
saves it once, then each implementation loads that directory in its own process and synthesises
a 100-character sentence and a 1,000-character paragraph (noise scales at 0, so both produce
the same audio). Prints seconds, real-time factor (seconds of compute per second of audio),
the ratio mmspeech / transformers (< 1: mmspeech is faster) and peak RSS per process.

    python benchmarks/tts.py [--repeats 3] [--out-json results.json]
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


def worker(implementation: str, directory: str, repeats: int) -> None:
    """Load one implementation, time both texts, print one JSON line (run in a child process)."""
    import resource

    import torch

    torch.set_num_threads(2)
    if implementation == "mmspeech":
        from mmspeech import VitsModel
    else:
        from transformers import VitsModel
    model = VitsModel.from_pretrained(directory).eval()
    model.noise_scale = 0.0
    model.noise_scale_duration = 0.0
    results = {}
    for name, text in (("sentence (100 chars)", SENTENCE), ("paragraph (1000 chars)", PARAGRAPH)):
        input_ids = torch.tensor([ids(text)])
        times = []
        with torch.inference_mode():
            model(input_ids=input_ids)  # warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                waveform = model(input_ids=input_ids).waveform
                times.append(time.perf_counter() - start)
        results[name] = {
            "seconds": statistics.median(times),
            "audio_seconds": waveform.shape[-1] / model.config.sampling_rate,
            "checksum": float(waveform.abs().sum()),
        }
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"results": results, "peak_gib": peak_gib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-json")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        implementation, directory = args.worker
        if implementation == "build":
            build(directory)
        else:
            worker(implementation, directory, args.repeats)
        return
    here = os.path.abspath(__file__)
    with tempfile.TemporaryDirectory() as directory:
        subprocess.run([sys.executable, here, "--worker", "build", directory], check=True)
        runs = {}
        for implementation in ("mmspeech", "transformers"):
            command = [sys.executable, here, "--worker", implementation, directory]
            command += ["--repeats", str(args.repeats)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[implementation] = json.loads(output.strip().splitlines()[-1])
    ours, theirs = runs["mmspeech"], runs["transformers"]
    print(f"{'text':24} {'mms s':>7} {'hf s':>7} {'ratio':>6} {'audio s':>8} {'mms RTF':>8} "
          f"{'hf RTF':>7}")  # fmt: skip
    for name, mine in ours["results"].items():
        ref = theirs["results"][name]
        audio = mine["audio_seconds"]
        print(
            f"{name:24} {mine['seconds']:7.3f} {ref['seconds']:7.3f} "
            f"{mine['seconds'] / ref['seconds']:6.2f} {audio:8.2f} "
            f"{mine['seconds'] / audio:8.3f} {ref['seconds'] / ref['audio_seconds']:7.3f}"
        )
        if abs(audio - ref["audio_seconds"]) > 1e-9:
            print(f"  warning: audio lengths differ ({audio} vs {ref['audio_seconds']})")
    print(
        f"peak RSS: mmspeech {ours['peak_gib']:.2f} GiB, transformers {theirs['peak_gib']:.2f} GiB"
    )
    if args.out_json:
        with open(args.out_json, "w", encoding="utf-8") as handle:
            json.dump(runs, handle, indent=2)


if __name__ == "__main__":
    main()
