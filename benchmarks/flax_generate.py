"""Flax speech encoder-decoder generation: jit compile time, then steady-state greedy and beam-4
against our PyTorch ``generate`` on the same checkpoint.

A wav2vec2-base encoder + BERT-base decoder (random weights, our PyTorch class) is saved into a
temporary directory and loaded by both implementations. 5 s of audio (16 kHz, random normal,
fixed seed), float32, 32 new tokens forced with ``min_new_tokens`` so every run decodes all
32 steps. The first Flax call of each workload compiles (reported apart); then ``--repeats``
timed runs of each implementation alternate and the medians are reported, with the token ids
compared.

Usage:
    python benchmarks/flax_generate.py [--repeats R] [--threads T]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
SECONDS = 5.0
NEW_TOKENS = 32
WORKLOADS: dict[str, dict[str, Any]] = {"greedy": {"num_beams": 1}, "beam-4": {"num_beams": 4}}
IDS = {"decoder_start_token_id": 101, "pad_token_id": 0, "eos_token_id": 102}


def build_checkpoint(directory: Path) -> None:
    import torch

    from mmspeech import BertConfig, SpeechEncoderDecoderConfig, Wav2Vec2Config
    from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel

    torch.manual_seed(0)
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        Wav2Vec2Config(), BertConfig(), **IDS
    )
    SpeechEncoderDecoderModel(config).save_pretrained(directory)


def timed(run: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    import jax
    import torch

    from mmspeech.flax import FlaxSpeechEncoderDecoderModel
    from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(int(SECONDS * SAMPLE_RATE), dtype=np.float32)
    audio = ((audio - audio.mean()) / audio.std())[None]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "w2v2-bert"
        build_checkpoint(directory)
        torch_load, torch_model = timed(
            lambda: SpeechEncoderDecoderModel.from_pretrained(directory)
        )
        flax_load, flax_model = timed(
            lambda: FlaxSpeechEncoderDecoderModel.from_pretrained(directory)
        )
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}; torch {torch.__version__}, "
        f"{args.threads} threads; load: torch {torch_load:.2f} s, flax {flax_load:.2f} s"
    )
    columns = ["workload", "Flax first call (compile + run)", "Flax", "PyTorch", "Flax / PyTorch"]
    print("| " + " | ".join([*columns, "same ids"]) + " |")
    print("|---|---|---|---|---|---|")
    for name, workload in WORKLOADS.items():
        options = {**workload, "max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
        first, _ = timed(lambda options=options: flax_model.generate(audio, **options))
        flax_times, torch_times = [], []
        for _ in range(args.repeats):
            seconds, flax_ids = timed(lambda options=options: flax_model.generate(audio, **options))
            flax_times.append(seconds)
            with torch.inference_mode():
                seconds, torch_ids = timed(
                    lambda options=options: torch_model.generate(torch.from_numpy(audio), **options)
                )
            torch_times.append(seconds)
        flax_s, torch_s = statistics.median(flax_times), statistics.median(torch_times)
        same = flax_ids.shape == tuple(torch_ids.shape) and (flax_ids == torch_ids.numpy()).all()
        print(f"| {name}, {NEW_TOKENS} tokens | {first:.1f} s | {flax_s:.2f} s | {torch_s:.2f} s "
              f"| {flax_s / torch_s:.2f} | {'yes' if same else 'no'} |")  # fmt: skip


if __name__ == "__main__":
    main()
