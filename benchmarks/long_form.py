"""Long-form transcription: peak memory and time for 1, 10 and 60 minutes of audio.

A mid-size wav2vec2 CTC architecture (random weights, built and saved by transformers with a
processor) transcribes a 16 kHz PCM-16 WAV file of each length:

    mmspeech      ``load_asr(dir).transcribe(path)`` (30 s windows, 5 s context, batch 4)
    transformers  ``pipeline("automatic-speech-recognition", dir, chunk_length_s=30,
                  stride_length_s=5, batch_size=4)(path)`` — the reference's chunked form

Each (implementation, length) runs in its own subprocess so its memory is its own: the peak RSS
(``ru_maxrss``) is reported with the RSS after loading the model, and the wall time of the
transcription alone. The audio is espeak-ng speech (or noise when espeak-ng is missing) repeated
to length, written once per length into a temporary directory.

Usage:
    python benchmarks/long_form.py [--minutes 1 10 60] [--skip-reference] [--out-json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
THREADS = 2
# A mid-size architecture (the machine this runs on is a shared 2-core CPU): the real feature
# encoder's strides (320 samples per frame) with 128 channels, a 4-layer transformer of width
# 384 (about 8 M parameters); stable layer norm as in MMS.
MID_SIZE: dict[str, Any] = {
    "hidden_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 6,
    "intermediate_size": 1536,
    "conv_dim": (128,) * 7,
    "do_stable_layer_norm": True,
    "feat_extract_norm": "layer",
    "conv_bias": True,
    "vocab_size": 32,
}
LETTERS = list("abcdefghijklmnopqrstuvwxyz'")


def build_checkpoint(directory: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**MID_SIZE)).eval()
    model.save_pretrained(directory)
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *LETTERS])}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    transformers.Wav2Vec2Processor(
        feature_extractor=transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True),
        tokenizer=transformers.Wav2Vec2CTCTokenizer(str(directory / "vocab.json")),
    ).save_pretrained(directory)


def make_audio(path: Path, minutes: float) -> None:
    import soundfile as sf

    if shutil.which("espeak-ng"):
        raw = subprocess.run(
            ["espeak-ng", "--stdout", "a benchmark of long form speech recognition, "
             "read one sentence after another for as long as it takes."],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        import io

        import soxr

        speech, rate = sf.read(io.BytesIO(raw), dtype="float32")
        speech = soxr.resample(speech, rate, SAMPLE_RATE).astype(np.float32)
    else:
        speech = 0.1 * np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE).astype(np.float32)
    unit = np.concatenate([speech, np.zeros(SAMPLE_RATE // 2, np.float32)])
    total = int(minutes * 60 * SAMPLE_RATE)
    with sf.SoundFile(path, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16") as out:
        written = 0
        while written < total:  # written piece by piece: the parent holds no hour of audio
            piece = unit[: total - written]
            out.write(piece)
            written += len(piece)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(implementation: str, model_dir: str, audio: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(THREADS)
    if implementation == "mmspeech":
        import mmspeech

        asr = mmspeech.load_asr(model_dir, device="cpu")
        loaded = rss_mb()
        start = time.perf_counter()
        result = asr.transcribe(audio)
        seconds = time.perf_counter() - start
        characters, segments = len(result.text), len(result.segments)
    else:
        import transformers

        transformers.logging.set_verbosity_error()
        pipeline = transformers.pipeline(
            "automatic-speech-recognition", model=model_dir, device="cpu",
            chunk_length_s=30, stride_length_s=5, batch_size=4,
        )  # fmt: skip
        loaded = rss_mb()
        start = time.perf_counter()
        output: Any = pipeline(audio)  # one input: one {"text": ...}
        seconds = time.perf_counter() - start
        characters, segments = len(output["text"]), 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"loaded_mb": loaded, "peak_mb": peak, "seconds": seconds, "chars": characters,
            "segments": segments}  # fmt: skip


def run_worker(implementation: str, model_dir: Path, audio: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", implementation, str(model_dir), str(audio)]
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--skip-reference", action="store_true", help="mmspeech only")
    parser.add_argument("--out-json", type=Path)
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "MODEL_DIR", "AUDIO"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    implementations = ["mmspeech"] + ([] if args.skip_reference else ["transformers"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmspeech-long-form-") as tmp:
        model_dir = Path(tmp) / "model"
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "import long_form; long_form.build_checkpoint(__import__('pathlib')"
                        ".Path(sys.argv[2]))", str(Path(__file__).parent), str(model_dir)],
                       check=True)  # fmt: skip
        for minutes in args.minutes:
            audio = Path(tmp) / f"{minutes:g}min.wav"
            make_audio(audio, minutes)
            for implementation in implementations:
                result = run_worker(implementation, model_dir, audio)
                rows.append({"implementation": implementation, "minutes": minutes, **result})
                print(json.dumps(rows[-1]), flush=True)
            audio.unlink()
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{THREADS} torch threads; mid-size wav2vec2 CTC ({MID_SIZE['num_hidden_layers']} "
          f"layers x {MID_SIZE['hidden_size']})")  # fmt: skip
    print(
        "| implementation | audio | time (s) | x real time | RSS after load (MB) | peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['implementation']} | {row['minutes']:g} min | failed: {row['error']} |")
            continue
        speed = row["minutes"] * 60 / row["seconds"]
        print(f"| {row['implementation']} | {row['minutes']:g} min | {row['seconds']:.1f} | "
              f"{speed:.1f} | {row['loaded_mb']:.0f} | {row['peak_mb']:.0f} |")  # fmt: skip
    if args.out_json:
        args.out_json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
