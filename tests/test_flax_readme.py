"""The README's "JAX / Flax" examples run as written: fine-tuning a tiny model, decoding,
saving (read back by the PyTorch class), and the sharded generate on two (CPU) devices."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flax", reason="the Flax tests need mmspeech[jax]")

README = Path(__file__).resolve().parents[1] / "README.md"
CHECK = """
import numpy as _np
from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel as _Torch
assert float(loss) < 2.0, float(loss)  # ln(32) = 3.47 at random init
import torch as _torch
_reloaded = _Torch.from_pretrained("tiny-flax")
with _torch.no_grad():
    _expected = _reloaded(
        _torch.from_numpy(audio), _torch.from_numpy(attention_mask),
        labels=_torch.from_numpy(labels),
    ).logits.numpy()
assert _np.abs(_expected - _np.asarray(logits)).max() < 1e-4
assert len(jax.devices()) == 2
assert (ids == model.generate(audio, max_new_tokens=6)).all()
print("README OK")
"""


def flax_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### JAX / Flax", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_readme_examples_run(tmp_path):
    blocks = flax_blocks()
    assert len(blocks) == 2
    script = tmp_path / "readme.py"
    script.write_text("\n".join(blocks) + CHECK, encoding="utf-8")
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
        "PYTHONPATH": os.pathsep.join(
            [str(README.parent / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "README OK" in done.stdout
    assert (tmp_path / "tiny-flax" / "model.safetensors").is_file()
