"""The matrix-product kernels behind the compute types, on one layer shape of mms-1b-all.

For a (rows × 1280) @ (1280 × 5120) product with bias — the feed-forward's first layer on 10 s
of audio at 500 rows — times, alternating, the minimum over the rounds of:

    float32      torch.nn.functional.linear
    bfloat16     the same in bfloat16
    int8 int_mm  mmspeech's int8 layer on torch._int_mm (its CUDA path): rows quantised, the
                 int32 product scaled back
    int8 oneDNN  mmspeech's int8 layer on onednn::qlinear_pointwise (its CPU path), same
                 quantisation

Both int8 lines include quantising the rows and applying the scales and bias, as a layer does.
Which one wins depends on the CPU (AMX int8 tiles, VNNI): the README records the results.

    python benchmarks/int8_kernels.py [--rows 500,1500] [--threads 2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from mmspeech.nn.int8 import int8_product, onednn_int8_available, pack_weight, quantize_rows

K, N = 1280, 5120


def kernels(rows: int) -> dict[str, Callable[[], torch.Tensor]]:
    torch.manual_seed(0)
    x, weight, bias = torch.randn(rows, K), torch.randn(N, K), torch.randn(N)
    xb, wb, bb = x.bfloat16(), weight.bfloat16(), bias.bfloat16()
    q, scale = quantize_rows(weight)
    scale = scale.squeeze(1)
    found = {
        "float32": lambda: torch.nn.functional.linear(x, weight, bias),
        "bfloat16": lambda: torch.nn.functional.linear(xb, wb, bb),
        "int8 int_mm": lambda: int8_product(x, q, scale, bias),
    }
    if onednn_int8_available():
        packed = pack_weight(q)
        found["int8 oneDNN"] = lambda: int8_product(x, None, scale, bias, packed)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="500,1500", help="rows (frames) per product")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads")  # fmt: skip
    print("| rows | kernel | ms | GFLOP/s |\n|---|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        found = kernels(rows)
        times: dict[str, list[float]] = {name: [] for name in found}
        for run in found.values():  # warm-up: oneDNN builds its kernels on first use
            run()
        for _ in range(args.rounds):
            for name, run in found.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        for name, spent in times.items():
            best = min(spent)
            print(f"| {rows} | {name} | {best * 1e3:.2f} | {2 * rows * K * N / best / 1e9:.0f} |")


if __name__ == "__main__":
    main()
