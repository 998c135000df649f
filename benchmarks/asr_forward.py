"""Forward-pass time and memory of mmspeech's ``Wav2Vec2ForCTC`` against transformers (the oracle).

The facebook/mms-1b-all architecture is built once with random weights by transformers and
written with ``save_pretrained`` into a temporary directory (~4 GB at full size). Each
implementation then loads that directory in its own subprocess, so that its memory is its own,
and runs two workloads under ``torch.inference_mode()`` in float32 on 2 threads:

    a  one 10 s utterance (16 kHz, random normal, fixed seed)
    b  a padded batch of four utterances of 10, 7, 4 and 2 s, with an attention mask

Each workload gets one warm-up forward and ``--repeats`` timed forwards per implementation; the
median is reported. The two subprocesses take turns (one forward at a time, the order swapped
every round), so a burst of load from other programs slows both alike instead of one. The parent
compares the two implementations' logits and prints a table; ``--out-json`` writes the same
numbers.

Memory is the resident set size (RSS). ``ru_maxrss`` of a child starts at its parent's RSS at
``exec`` (Linux), so the parent imports neither torch nor transformers. Before a workload each
child resets its high-water mark (``/proc/self/clear_refs``), so the peak of a workload is its
own, not the one reached while loading.

Usage:
    python benchmarks/asr_forward.py [--layers N] [--repeats R] [--out-json F] [--model-dir D]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

SAMPLE_RATE = 16_000
SEED = 0
THREADS = 2
IMPLEMENTATIONS = ("mmspeech", "transformers")
# name -> utterance lengths in seconds (padded with zeros to the longest)
WORKLOADS: dict[str, tuple[float, ...]] = {
    "a: 1 x 10 s": (10.0,),
    "b: 4 padded (10/7/4/2 s)": (10.0, 7.0, 4.0, 2.0),
}
# facebook/mms-1b-all's config.json: the keys that shape the network at inference (dropouts and
# the other training-only keys are left at their defaults). conv_dim / conv_kernel /
# conv_stride are the wav2vec 2.0 defaults.
MMS_1B_ALL: dict[str, Any] = {
    "hidden_size": 1280,
    "num_hidden_layers": 48,
    "num_attention_heads": 16,
    "intermediate_size": 5120,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "do_stable_layer_norm": True,
    "feat_extract_norm": "layer",
    "feat_extract_activation": "gelu",
    "conv_bias": True,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "adapter_attn_dim": 16,
    "vocab_size": 154,
    "layerdrop": 0.0,
    "mask_time_prob": 0.05,
    "ctc_loss_reduction": "mean",
}
CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)
GIB = 1024**3


# -- measuring (Linux /proc) ------------------------------------------------------------------


def memory_gib() -> dict[str, float]:
    """This process's current RSS (and its anonymous / file-backed parts) and peaks, in GiB."""
    found: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                found[key] = int(value.split()[0]) * 1024 / GIB  # reported in kB
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return {
        "rss": found["VmRSS"],
        "rss_anon": found["RssAnon"],
        "rss_file": found["RssFile"],
        "hwm": found["VmHWM"],
        "ru_maxrss": maxrss_kib * 1024 / GIB,
    }


def reset_peak_rss() -> bool:
    """Set the RSS high-water mark to the current RSS (``ru_maxrss`` follows); False if denied."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def cpu_seconds() -> tuple[float, float, float]:
    """CPU seconds so far: (busy on the whole machine, used by this process, stolen by the VM)."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    hertz = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return (user + nice + system + irq + softirq) / hertz, own.user + own.system, steal / hertz


# -- inputs -----------------------------------------------------------------------------------


def make_batch(seconds: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Random normal waveforms, zero-padded: ((B, samples) float32, (B, samples) int64 mask)."""
    rng = np.random.default_rng(SEED)
    lengths = [round(s * SAMPLE_RATE) for s in seconds]
    values = np.zeros((len(lengths), max(lengths)), dtype=np.float32)
    mask = np.zeros(values.shape, dtype=np.int64)
    for row, length in enumerate(lengths):
        values[row, :length] = rng.standard_normal(length, dtype=np.float32)
        mask[row, :length] = 1
    return values, mask


def frame_count(samples: int) -> int:
    """Frames the wav2vec 2.0 feature encoder makes from ``samples`` samples."""
    for kernel, stride in zip(CONV_KERNEL, CONV_STRIDE, strict=True):
        samples = (samples - kernel) // stride + 1
    return samples


# -- subprocess workers -----------------------------------------------------------------------


def build_checkpoint(model_dir: Path, layers: int) -> None:
    """Random-weight mms-1b-all (``layers`` blocks) saved by transformers into ``model_dir``."""
    import torch
    import transformers

    torch.manual_seed(SEED)
    config = transformers.Wav2Vec2Config(**{**MMS_1B_ALL, "num_hidden_layers": layers})
    model = transformers.Wav2Vec2ForCTC(config).eval()
    model.save_pretrained(model_dir)
    params = sum(p.numel() for p in model.parameters())
    print(f"saved {params / 1e6:.0f}M parameters to {model_dir}", file=sys.stderr, flush=True)


def load_model(implementation: str, model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The CTC model of ``implementation`` and facts about it for the report."""
    import torch

    if implementation == "mmspeech":
        from mmspeech.models.wav2vec2 import Wav2Vec2ForCTC

        model = Wav2Vec2ForCTC.from_pretrained(model_dir, dtype=torch.float32)
        return model.eval(), {}
    import transformers

    reference = transformers.Wav2Vec2ForCTC.from_pretrained(model_dir, dtype=torch.float32)
    info = {
        "transformers_version": transformers.__version__,
        "attn_implementation": reference.config._attn_implementation,
    }
    return reference.eval(), info


def serve(implementation: str, model_dir: Path, work_dir: Path) -> None:
    """Worker: load, then run one forward per request read from stdin, answering on stdout.

    Requests and answers are JSON lines. ``{"workload": name, "save_logits": bool}`` runs one
    forward; ``{"quit": true}`` ends. Anything the libraries print goes to stderr.
    """
    import gc

    import torch

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # keep the answer channel clean

    def answer(message: dict[str, Any]) -> None:
        answers.write(json.dumps(message) + "\n")

    torch.set_num_threads(THREADS)
    at_start = memory_gib()
    started = time.perf_counter()
    model, info = load_model(implementation, model_dir)
    load_seconds = time.perf_counter() - started
    gc.collect()
    loaded = memory_gib()
    # Both libraries may map safetensors files lazily: weights become resident only when first
    # read. Read every tensor once so that the forward's own memory can be told apart.
    started = time.perf_counter()
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.sum()
    page_in_seconds = time.perf_counter() - started
    answer(
        {
            **info,
            "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "load_seconds": load_seconds,
            "page_in_seconds": page_in_seconds,
            "memory_at_start": at_start,
            "memory_loaded": loaded,
            "memory_weights_resident": memory_gib(),
        }
    )
    current = None
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        name = request["workload"]
        if name != current:  # a new workload: fresh inputs and a fresh peak
            values, mask = make_batch(WORKLOADS[name])
            input_values, attention_mask = torch.from_numpy(values), torch.from_numpy(mask)
            current = name
            gc.collect()
            memory_before = memory_gib()
            peak_reset = reset_peak_rss()
        faults_before = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before, wall_before = cpu_seconds(), time.perf_counter()
        with torch.inference_mode():
            logits = model(input_values, attention_mask=attention_mask).logits
        elapsed = time.perf_counter() - wall_before
        busy, own, steal = (b - a for a, b in zip(cpu_before, cpu_seconds(), strict=True))
        faults = resource.getrusage(resource.RUSAGE_SELF)
        logits_file = work_dir / f"{implementation}-{name[0]}.npy"
        if request.get("save_logits"):
            np.save(logits_file, logits.float().numpy())
        del logits
        answer(
            {
                "seconds": elapsed,
                # cores kept busy by other processes (or the hypervisor) during the forward
                "other_cores": max(busy - own, 0.0) / elapsed,
                "steal_cores": steal / elapsed,
                "own_cores": own / elapsed,
                # page faults: major ones mean weights were read back from disk
                "major_faults": faults.ru_majflt - faults_before.ru_majflt,
                "minor_faults": faults.ru_minflt - faults_before.ru_minflt,
                "memory_before": memory_before,
                "memory_after": memory_gib(),
                "peak_reset": peak_reset,
                "logits": str(logits_file),
            }
        )


# -- parent -----------------------------------------------------------------------------------


def worker_command(*args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), *args]


class Worker:
    """One implementation in its own process, answering forward requests."""

    def __init__(self, implementation: str, command: list[str]):
        """``command`` starts the worker process (benchmarks/compute_types.py has its own)."""
        self.implementation = implementation
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.loaded = self._receive()  # blocks until the model is loaded

    def _receive(self) -> dict[str, Any]:
        out: IO[str] | None = self.process.stdout
        assert out is not None
        line = out.readline()
        if not line:
            code = self.process.wait()
            raise SystemExit(f"the {self.implementation} worker died (exit code {code})")
        message: dict[str, Any] = json.loads(line)
        return message

    def request(self, **message: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self._receive()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(json.dumps({"quit": True}) + "\n")
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_benchmark(model_dir: Path, work_dir: Path, repeats: int) -> dict[str, Any]:
    """Load both implementations (one after the other), then time them taking turns."""
    workers: dict[str, Worker] = {}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {i: {} for i in IMPLEMENTATIONS}
    try:
        for impl in IMPLEMENTATIONS:
            print(f"loading {impl} ...", file=sys.stderr, flush=True)
            command = worker_command(
                "--worker", impl, "--model-dir", str(model_dir), "--work-dir", str(work_dir)
            )
            workers[impl] = Worker(impl, command)
        for name in WORKLOADS:
            order = list(IMPLEMENTATIONS)
            for run in range(repeats + 1):  # run 0 is the warm-up
                for impl in order:
                    answer = workers[impl].request(workload=name, save_logits=run == 0)
                    runs[impl].setdefault(name, []).append(answer)
                    label = "warm-up" if run == 0 else f"run {run}"
                    print(
                        f"  {name:<26} {impl:<12} {label:<8} {answer['seconds']:8.3f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                order.reverse()
    finally:
        for worker in workers.values():
            worker.close()
    return {
        impl: {"loaded": workers[impl].loaded, "workloads": runs[impl]} for impl in IMPLEMENTATIONS
    }


def build(model_dir: Path, layers: int) -> None:
    print(f"building the checkpoint ({layers} layers) in {model_dir} ...", file=sys.stderr)
    command = worker_command("--worker", "build", "--model-dir", str(model_dir))
    completed = subprocess.run([*command, "--layers", str(layers)], check=False)
    if completed.returncode:
        raise SystemExit(f"building the checkpoint failed (exit code {completed.returncode})")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def max_logit_diff(name: str, logits_files: dict[str, str]) -> float:
    """Max |mmspeech - transformers| over the valid (unpadded) frames of workload ``name``."""
    ours, reference = (np.load(logits_files[impl]) for impl in IMPLEMENTATIONS)
    lengths = [frame_count(round(s * SAMPLE_RATE)) for s in WORKLOADS[name]]
    return max(
        float(np.abs(ours[row, :length] - reference[row, :length]).max())
        for row, length in enumerate(lengths)
    )


def summarise(results: dict[str, Any], layers: int) -> dict[str, Any]:
    """The report's numbers: environment, loading, and one entry per workload."""
    loaded = {impl: results[impl]["loaded"] for impl in IMPLEMENTATIONS}
    rows = []
    for name in WORKLOADS:
        row: dict[str, Any] = {"workload": name}
        for impl in IMPLEMENTATIONS:
            answers = results[impl]["workloads"][name]
            timed = answers[1:]
            seconds = [a["seconds"] for a in timed]
            peak = max(a["memory_after"]["ru_maxrss"] for a in answers)
            row[impl] = {
                "seconds": statistics.median(seconds),
                "min_seconds": min(seconds),
                "all_seconds": seconds,
                "warmup_seconds": answers[0]["seconds"],
                "peak_rss_gib": peak,
                "forward_increase_gib": peak - loaded[impl]["memory_weights_resident"]["rss"],
                "rss_before_gib": answers[0]["memory_before"]["rss"],
                "peak_is_per_workload": answers[0]["peak_reset"],
                "other_cores": statistics.mean(a["other_cores"] for a in timed),
                "steal_cores": statistics.mean(a["steal_cores"] for a in timed),
                "major_faults": sum(a["major_faults"] for a in timed),
                "minor_faults_per_run": statistics.mean(a["minor_faults"] for a in timed),
            }
        row["ratio"] = row["mmspeech"]["seconds"] / row["transformers"]["seconds"]
        logits = {impl: results[impl]["workloads"][name][0]["logits"] for impl in IMPLEMENTATIONS}
        row["logits_max_abs_diff"] = max_logit_diff(name, logits)
        rows.append(row)
    reference = loaded["transformers"]
    return {
        "environment": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": reference["torch_version"],
            "transformers": reference["transformers_version"],
            "threads": {impl: loaded[impl]["threads"] for impl in IMPLEMENTATIONS},
            "transformers_attn_implementation": reference["attn_implementation"],
        },
        "model": {"layers": layers, "parameters": loaded["mmspeech"]["parameters"]},
        "load": {
            impl: {
                "seconds": loaded[impl]["load_seconds"],
                "rss_gib": loaded[impl]["memory_loaded"]["rss"],
                "rss_anon_gib": loaded[impl]["memory_loaded"]["rss_anon"],
                "rss_file_gib": loaded[impl]["memory_loaded"]["rss_file"],
                "peak_while_loading_gib": loaded[impl]["memory_loaded"]["ru_maxrss"],
                "page_in_seconds": loaded[impl]["page_in_seconds"],
                "resident_rss_gib": loaded[impl]["memory_weights_resident"]["rss"],
                "resident_rss_anon_gib": loaded[impl]["memory_weights_resident"]["rss_anon"],
                "resident_rss_file_gib": loaded[impl]["memory_weights_resident"]["rss_file"],
            }
            for impl in IMPLEMENTATIONS
        },
        "workloads": rows,
    }


def print_report(report: dict[str, Any]) -> None:
    env, model = report["environment"], report["model"]
    print(f"\nCPU: {env['cpu']} ({env['cpu_count']} logical cores)")
    print(
        f"python {env['python']}, torch {env['torch']}, transformers {env['transformers']} "
        f"(attention: {env['transformers_attn_implementation']}), threads {env['threads']}"
    )
    print(
        f"model: mms-1b-all architecture, {model['layers']} layers, {model['parameters']:,} params"
    )
    print(
        "\nloading        load s  RSS loaded GiB (anon + file)  peak GiB"
        "    page-in s  RSS weights read GiB (anon + file)"
    )
    for impl, load in report["load"].items():
        print(
            f"{impl:<13} {load['seconds']:7.1f}  {load['rss_gib']:6.2f} "
            f"({load['rss_anon_gib']:.2f} + {load['rss_file_gib']:.2f})"
            f"            {load['peak_while_loading_gib']:6.2f}"
            f"    {load['page_in_seconds']:9.1f}  {load['resident_rss_gib']:6.2f} "
            f"({load['resident_rss_anon_gib']:.2f} + {load['resident_rss_file_gib']:.2f})"
        )
    header = (
        f"\n{'workload':<26} {'mms s':>8} {'hf s':>8} {'mms/hf':>7} {'min ratio':>9} "
        f"{'mms peak':>9} {'hf peak':>8} {'mms +fwd':>9} {'hf +fwd':>8} {'max|dlogit|':>12}"
    )
    print(header)
    print("-" * (len(header) - 1))
    for row in report["workloads"]:
        mms, ref = row["mmspeech"], row["transformers"]
        print(
            f"{row['workload']:<26} {mms['seconds']:8.3f} {ref['seconds']:8.3f} "
            f"{row['ratio']:7.3f} {mms['min_seconds'] / ref['min_seconds']:9.3f} "
            f"{mms['peak_rss_gib']:9.2f} {ref['peak_rss_gib']:8.2f} "
            f"{mms['forward_increase_gib']:9.2f} {ref['forward_increase_gib']:8.2f} "
            f"{row['logits_max_abs_diff']:12.2e}"
        )
    print(
        "\nseconds: median of the timed forwards. mms/hf <= 1 means mmspeech is faster; min ratio:"
        "\nthe same for the fastest forwards (less sensitive to other load on the machine).\n"
        "peak: max RSS (GiB) during the workload; +fwd: that peak minus the RSS once every\n"
        "weight has been read (file-backed pages of a memory-mapped checkpoint count in RSS)."
    )
    faults = ", ".join(
        f"{row['workload'][0]}/{impl} {row[impl]['minor_faults_per_run'] / 1000:.0f}k"
        for row in report["workloads"]
        for impl in IMPLEMENTATIONS
    )
    print(f"minor page faults per forward (fresh 4 KiB pages from the kernel): {faults}")
    busy = [
        f"{row['workload'][0]}/{impl} {row[impl]['other_cores'] + row[impl]['steal_cores']:.2f}"
        for row in report["workloads"]
        for impl in IMPLEMENTATIONS
        if row[impl]["other_cores"] + row[impl]["steal_cores"] > 0.1
    ]
    if busy:
        print(
            "WARNING: other processes kept CPU cores busy during the timed forwards (mean "
            f"cores: {', '.join(busy)}); the times are inflated, compare on an idle machine."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--layers", type=int, help="transformer blocks (default 48: the full model)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed forwards per workload (default 3)"
    )
    parser.add_argument("--out-json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="reuse the checkpoint here (or build it here and keep it) instead of a temp dir",
    )
    parser.add_argument("--worker", choices=("build", *IMPLEMENTATIONS), help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1 or (args.layers is not None and args.layers < 1):
        parser.error("--repeats and --layers must be at least 1")

    if args.worker == "build":
        build_checkpoint(args.model_dir, args.layers or MMS_1B_ALL["num_hidden_layers"])
        return
    if args.worker:
        serve(args.worker, args.model_dir, args.work_dir)
        return

    work_dir = Path(tempfile.mkdtemp(prefix="asr_forward_"))
    model_dir = args.model_dir or work_dir / "model"
    try:
        if not (model_dir / "config.json").exists():
            build(model_dir, args.layers or MMS_1B_ALL["num_hidden_layers"])
        layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
        if args.layers is not None and layers != args.layers:
            print(f"note: {model_dir} has {layers} layers; using it as it is", file=sys.stderr)
        report = summarise(run_benchmark(model_dir, work_dir, args.repeats), layers)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print_report(report)
    if args.out_json:
        args.out_json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
