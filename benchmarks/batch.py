"""Throughput and peak memory per worker of a batch job (``mmspeech.batch``): one process,
``--workers 2`` and Ray Data with 2 actors, on the same collection.

The collection is espeak-ng speech in the six languages of the bundled demo checkpoints
(``--items`` clips of 1-12 s, no language given: every item goes through language ID, then ASR by
language), transcribed with the demo ASR model. Each configuration runs in its own subprocess
into a fresh output folder; the job's wall time is that of ``transcribe_collection`` (reading the
collection, loading the models in the workers, probe, ASR, writing shards and the final
manifests). For Ray, a local Ray instance with 2 CPUs is started first; its start is reported
apart (a cluster is up before jobs come to it).

Peak memory per worker is the highest resident set size (``VmHWM``) of a process that holds a
model: the job's own process (one process), its worker processes (``--workers``) or the Ray
actors; a sampler reads ``/proc`` every 50 ms.

Usage:
    python benchmarks/batch.py [--items N] [--out-json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "1 process": {"workers": 1},
    "--workers 2": {"workers": 2},
    "Ray, 2 actors": {"ray": True},
}
THREADS = 1  # torch threads per worker (process or actor)
VOICES = {
    "en": ["hello how are you today", "the weather is nice and the sun is shining"],
    "fr": ["bonjour comment allez vous", "nous allons au marché demain matin"],
    "de": ["guten morgen wie geht es dir", "wir fahren morgen mit dem zug nach berlin"],
    "es": ["hola como estas hoy amigo", "mañana vamos a la playa con la familia"],
    "ru": ["привет как дела у тебя сегодня", "завтра мы поедем в город на поезде"],
    "el": ["καλημέρα τι κάνεις σήμερα", "αύριο θα πάμε στη θάλασσα με τα παιδιά"],
}


def make_collection(folder: Path, items: int) -> float:
    """``items`` clips of 1-12 s (a sentence said 1 to 4 times); returns the audio seconds."""
    import numpy as np
    import soundfile as sf

    total = 0.0
    pairs = [(voice, text) for voice, texts in VOICES.items() for text in texts]
    for index in range(items):
        voice, text = pairs[index % len(pairs)]
        said = " . ".join([text] * (1 + index % 4))
        wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(150 + index % 30), "--stdout",
                              said], capture_output=True, check=True).stdout  # fmt: skip
        path = folder / voice / f"{index:04d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav)
        audio, rate = sf.read(path)
        total += len(np.atleast_1d(audio)) / rate
    return total


def peak_rss(pids: set[int], marker: str | None) -> dict[int, int]:
    """pid -> VmHWM (bytes) of ``pids`` and of the processes whose command line has ``marker``."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if pid not in pids:
                if marker is None:
                    continue
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if marker.encode() not in handle.read():
                        continue
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        found[pid] = int(line.split()[1]) * 1024
        except OSError:
            continue
    return found


def child(config: str, collection: str, output: str) -> None:
    """One configuration in this process; prints a JSON line of its numbers."""
    import multiprocessing

    import torch

    from mmspeech.api.options import TranscribeOptions
    from mmspeech.batch import BatchOptions, transcribe_collection
    from mmspeech.demo import demo_checkpoint

    changes: dict[str, Any] = dict(CONFIGS[config])
    ray_start_s = 0.0
    if changes.get("ray"):
        import ray

        began = time.perf_counter()
        # a private local instance: no auth token written to ~/.ray (Ray's default for ray.init)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2 * THREADS, include_dashboard=False, log_to_driver=False)
        ray_start_s = time.perf_counter() - began
        changes.update(actors=(2, 2), actor_cpus=float(THREADS))
    else:
        changes["threads"] = THREADS * changes["workers"]  # split between the workers
        torch.set_num_threads(THREADS)
    options = BatchOptions(
        model=str(demo_checkpoint("asr")),
        transcribe=TranscribeOptions(lid_model=str(demo_checkpoint("lid"))),
        shard_size=8, parquet=False, **changes,
    )  # fmt: skip
    peaks: dict[int, int] = {}
    stop = threading.Event()
    marker = "UnitActor" if changes.get("ray") else None

    def sample() -> None:
        while not stop.is_set():
            pids = {p.pid for p in multiprocessing.active_children() if p.pid is not None}
            pids |= {os.getpid()} if config == "1 process" else set()
            for pid, rss in peak_rss(pids, marker).items():
                peaks[pid] = max(rss, peaks.get(pid, 0))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    summary = transcribe_collection(collection, output, options)
    stop.set()
    sampler.join()
    print(json.dumps({
        "config": config, "wall_s": summary.wall_s, "audio_s": summary.audio_s,
        "results": summary.results, "errors": summary.errors, "ray_start_s": ray_start_s,
        "workers": len(peaks), "peak_rss_gib": max(peaks.values()) / 2**30 if peaks else None,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=120, help="clips in the collection")
    parser.add_argument("--out-json", help="write the numbers here too")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        collection = Path(tmp) / "collection"
        audio_s = make_collection(collection, args.items)
        print(f"collection: {args.items} clips, {audio_s:.0f} s of audio; "
              f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")  # fmt: skip
        rows: list[dict[str, Any]] = []
        for config in CONFIGS:
            output = Path(tmp) / f"out-{len(rows)}"
            done = subprocess.run(
                [sys.executable, __file__, "--child", config, str(collection), str(output)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            row = json.loads(done.stdout.strip().splitlines()[-1])
            assert row["results"] == args.items and row["errors"] == 0, row
            rows.append(row)
    plain = next(r for r in rows if r["config"] == "--workers 2")
    print(f"{'configuration':<16} {'wall s':>7} {'audio s / wall s':>17} {'peak RSS/worker':>16}")
    for row in rows:
        rate = row["audio_s"] / row["wall_s"]
        extra = ""
        if row["config"].startswith("Ray"):
            overhead = row["wall_s"] / plain["wall_s"] - 1
            extra = (
                f"  (Ray start {row['ray_start_s']:.1f} s apart; {overhead:+.0%} vs --workers 2)"
            )
        print(f"{row['config']:<16} {row['wall_s']:>7.1f} {rate:>17.1f} "
              f"{row['peak_rss_gib']:>12.2f} GiB{extra}")  # fmt: skip
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
