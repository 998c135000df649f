"""Copy the trained demo checkpoints into the package (src/mmspeech/demo/{asr,lid}) in float16.

Only the files a checkpoint needs are copied: config, processor/tokenizer settings, vocabulary,
weights and adapters. Float16 halves the size; loading casts back to float32 by default.

    python scripts/demo/ship.py --models /work/demo-data/models
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

DEMO = Path(__file__).resolve().parents[2] / "src" / "mmspeech" / "demo"
SETTINGS = ("config.json", "preprocessor_config.json", "tokenizer_config.json",
            "special_tokens_map.json", "vocab.json")  # fmt: skip


def ship(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in SETTINGS:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    for weights in sorted(source.glob("*.safetensors")):
        tensors = {
            key: (value.to(torch.float16) if value.is_floating_point() else value).contiguous()
            for key, value in load_file(weights).items()
        }
        save_file(tensors, target / weights.name, metadata={"format": "pt"})
    size = sum(p.stat().st_size for p in target.iterdir())
    print(f"{target}: {size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=Path("/work/demo-data/models"))
    args = parser.parse_args()
    for kind in ("asr", "lid"):
        ship(args.models / kind, DEMO / kind)


if __name__ == "__main__":
    main()
