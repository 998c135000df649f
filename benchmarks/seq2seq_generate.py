"""Speech encoder-decoder generation time and memory: mmspeech against transformers (the oracle).

A wav2vec2-base encoder + BERT-base decoder (the SPEC §6 pairing) is built once with random
weights by transformers and saved into a temporary directory. Each implementation then loads it
in its own subprocess (so its peak memory is its own) and decodes 5 s of audio (16 kHz, random
normal, fixed seed) in float32 on 2 threads:

    greedy   32 new tokens
    beam-4   32 new tokens, 4 beams

``min_new_tokens=32`` forbids the end token, so both implementations run all 32 steps. Each
workload gets a warm-up and ``--repeats`` timed runs; the median is reported with the token ids
compared. The two subprocesses take turns, one run at a time, so background load hits both.

Usage:
    python benchmarks/seq2seq_generate.py [--repeats R] [--out-json F]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLE_RATE = 16_000
SECONDS = 5.0
THREADS = 2
NEW_TOKENS = 32
IMPLEMENTATIONS = ("mmspeech", "transformers")
WORKLOADS: dict[str, dict[str, Any]] = {"greedy": {"num_beams": 1}, "beam-4": {"num_beams": 4}}
IDS = {"decoder_start_token_id": 101, "pad_token_id": 0, "eos_token_id": 102}


def build_checkpoint(model_dir: Path) -> None:
    """wav2vec2-base + bert-base (random weights), saved by transformers."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.Wav2Vec2Config(), transformers.BertConfig(), **IDS
    )
    transformers.SpeechEncoderDecoderModel(config=config).save_pretrained(model_dir)


def worker(implementation: str, model_dir: str) -> None:
    """Load, then run the workload named on each stdin line; answer with one JSON line."""
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    if implementation == "mmspeech":
        from mmspeech import SpeechEncoderDecoderModel

        model: Any = SpeechEncoderDecoderModel.from_pretrained(model_dir)
    else:
        import transformers

        model = transformers.SpeechEncoderDecoderModel.from_pretrained(model_dir).eval()
    load_seconds = time.perf_counter() - start
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.standard_normal(int(SECONDS * SAMPLE_RATE), dtype=np.float32))
    audio = ((audio - audio.mean()) / audio.std())[None]
    print(json.dumps({"load": load_seconds}), flush=True)
    for line in sys.stdin:
        options = {
            **WORKLOADS[line.strip()],
            "max_new_tokens": NEW_TOKENS,
            "min_new_tokens": NEW_TOKENS,
        }
        with torch.inference_mode():
            start = time.perf_counter()
            ids = model.generate(audio, **options)
            seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GiB
        print(json.dumps({"seconds": seconds, "ids": ids.tolist(), "peak_gib": peak}), flush=True)


def read_answer(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    answer: dict[str, Any] = json.loads(child.stdout.readline())
    return answer


def ask(child: subprocess.Popen[str], workload: str) -> dict[str, Any]:
    """Have a worker run ``workload`` once; its answer."""
    assert child.stdin is not None
    child.stdin.write(workload + "\n")
    child.stdin.flush()
    return read_answer(child)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "w2v2-bert"
        subprocess.run(
            [sys.executable, __file__, "--build", str(model_dir)], check=True, timeout=600
        )
        children = {
            name: subprocess.Popen(
                [sys.executable, __file__, "--worker", name, str(model_dir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for name in IMPLEMENTATIONS
        }
        load = {name: read_answer(child)["load"] for name, child in children.items()}
        results: dict[str, dict[str, Any]] = {}
        for workload in WORKLOADS:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in IMPLEMENTATIONS}
            for round_index in range(args.repeats + 1):  # round 0 warms up
                order = IMPLEMENTATIONS if round_index % 2 == 0 else IMPLEMENTATIONS[::-1]
                for name in order:
                    answer = ask(children[name], workload)
                    if round_index:
                        runs[name].append(answer)
            times = {n: statistics.median(r["seconds"] for r in runs[n]) for n in IMPLEMENTATIONS}
            same = runs["mmspeech"][-1]["ids"] == runs["transformers"][-1]["ids"]
            results[workload] = {
                "seconds": times,
                "ratio": times["mmspeech"] / times["transformers"],
                "peak_gib": {n: runs[n][-1]["peak_gib"] for n in IMPLEMENTATIONS},
                "same_ids": same,
                "tokens": len(runs["mmspeech"][-1]["ids"][0]),
            }
        for child in children.values():
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=60)
    print(f"load: mmspeech {load['mmspeech']:.2f} s, transformers {load['transformers']:.2f} s")
    print(
        "| workload | mmspeech | transformers | ratio | peak RSS mmspeech / transformers | same |"
    )
    print("|---|---|---|---|---|---|")
    for workload, row in results.items():
        seconds, peak = row["seconds"], row["peak_gib"]
        print(
            f"| {workload} ({NEW_TOKENS} tokens) | {seconds['mmspeech']:.2f} s | "
            f"{seconds['transformers']:.2f} s | {row['ratio']:.2f} | "
            f"{peak['mmspeech']:.2f} / {peak['transformers']:.2f} GiB | {row['same_ids']} |"
        )
    if args.out_json:
        args.out_json.write_text(json.dumps({"load": load, "workloads": results}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--build":
        build_checkpoint(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
