"""Compute types: the number format a loaded model runs in, chosen part by part.

=================  ===============================================  =======================
compute type       matrix products of the transformer blocks        everything else
=================  ===============================================  =======================
``float32``        float32                                          float32
``bfloat16``       bfloat16                                         bfloat16 (*)
``float16``        float16 (CUDA only)                              float16 (*)
``int8``           int8 × int8 (:class:`mmspeech.nn.int8.Int8Linear`)  float32
``int8_float32``   same as ``int8``                                 float32
``int8_bfloat16``  int8 × int8                                      bfloat16 (*)
``int8_float16``   int8 × int8 (CUDA only)                          float16 (*)
=================  ===============================================  =======================

(*) LayerNorm/GroupNorm statistics, softmax and log-softmax accumulate in float32 inside
torch's kernels for half-precision inputs, and every task head returns float32 log-probs.
The int8 types also run the feature encoder's strided convolutions as int8 products over their
windows (:class:`mmspeech.nn.int8.Int8Conv1d`), all but the first one, on the waveform. What
stays float in every type: MMS language adapters and output heads (small, swapped per
language, so an adapter switch on a quantised base equals quantising after the switch),
embeddings, the waveform convolution and the positional convolution.

``auto`` picks, per device, the fastest type that meets the accuracy bounds measured by
``benchmarks/precision.py`` and ``benchmarks/compute_types.py`` (see the README), against the
reference's float32 on a 10 s clip at 2 threads: int8_bfloat16 on CPUs with int8 dot products
and native bfloat16 but no AMX (2.79x on an AMD EPYC with AVX-512 VNNI/BF16; int8 2.34x,
bfloat16 2.22x there, before the oneDNN int8 path); bfloat16 with AMX (3.2-4.2x at 10 s and
3.8-3.9x at 30 s on the project's AMX Xeon, where int8_bfloat16 is as fast, 3.5-4.5x, but its
logits sit at the bounds: cosine 0.9990, argmax agreement 98.0 %; int8 2.9-4.1x); int8 with int8
dot products alone; bfloat16 with native bfloat16 alone; else float32. float16 on CUDA GPUs.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmspeech.checkpoints.options import COMPUTE_TYPES
from mmspeech.errors import ConfigError
from mmspeech.nn.int8 import Int8Conv1d, Int8Linear, Int8Weight, release_freed_memory

logger = logging.getLogger(__name__)

_FLOAT = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# module-name parts of the blocks whose linear layers int8 replaces (wav2vec2/HuBERT "layers",
# BERT "layer", GPT-2 "h", BART "layers"); MMS adapters are left out (swapped per language)
_BLOCK_PARTS = {"layers", "layer", "h"}
_SKIPPED_PARTS = {"adapter_layer"}
# the feature encoder's layers (``feature_extractor.conv_layers.{i}``): their strided convs
_CONV_PARTS = {"conv_layers"}


def activation_dtype(compute_type: str) -> torch.dtype:
    """The float dtype activations flow in for a (resolved) compute type."""
    return _FLOAT[compute_type.removeprefix("int8_")] if compute_type != "int8" else torch.float32


def is_int8(compute_type: str) -> bool:
    return compute_type.startswith("int8")


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_int8_dot() -> bool:
    """Whether this CPU has int8 dot-product instructions (x86 VNNI / AMX, Arm dotprod)."""
    flags = _cpu_flags()
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX matrix tiles (Intel Sapphire Rapids and later)."""
    return bool(_cpu_flags() & {"amx_bf16", "amx_int8"})


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16, AMX, Arm BF16)."""
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_compute_type(compute_type: str | None, device: torch.device) -> str:
    """The concrete compute type for ``device`` (``auto`` decided; unsupported ones refused).

    Raises:
        ConfigError: an unknown type, or one the device cannot run (float16 on a CPU).
    """
    if compute_type is None:
        return "float32"
    if compute_type not in COMPUTE_TYPES:
        raise ConfigError(
            f"Unknown compute type {compute_type!r}; expected one of: {', '.join(COMPUTE_TYPES)}."
        )
    if compute_type == "auto":
        if device.type == "cuda":
            major, _ = torch.cuda.get_device_capability(device)
            return "float16" if major >= 7 else "float32"
        if device.type == "cpu":  # measured: benchmarks/compute_types.py (README)
            if cpu_has_amx():  # AMX bfloat16 tiles beat int8 products done with VNNI
                return "bfloat16"
            if cpu_has_int8_dot():
                return "int8_bfloat16" if cpu_has_bf16() else "int8"
            return "bfloat16" if cpu_has_bf16() else "float32"
        return "float32"
    if compute_type == "int8_float32":
        return "int8"
    half = compute_type.endswith("float16") and not compute_type.endswith("bfloat16")
    if half and device.type != "cuda":
        raise ConfigError(
            f"compute type {compute_type!r} runs on CUDA GPUs only ({device.type} has no "
            "fast float16); use bfloat16, int8 or int8_bfloat16 on a CPU."
        )
    return compute_type


def quantize_linears(model: nn.Module, convs: bool = True) -> int:
    """Replace the float linear layers of the transformer blocks by :class:`Int8Linear`, and
    (``convs``) the feature encoder's strided convolutions by :class:`Int8Conv1d`.

    GPT-2's ``Conv1D`` (a linear layer with its weight stored transposed) is converted too.

    Returns:
        The number of layers replaced.
    """
    replaced = 0
    for name, module in list(model.named_modules()):
        parts = set(name.split("."))
        if parts & _CONV_PARTS:
            if not convs:
                continue
            conv = getattr(module, "conv", None)
            # the waveform's one-channel conv stays float: a 10-wide product, and the input
            if isinstance(conv, nn.Conv1d) and conv.in_channels > 1 and Int8Conv1d.supports(conv):
                module.conv = Int8Conv1d.from_conv(conv)
                replaced += 1
            continue
        if not parts & _BLOCK_PARTS or parts & _SKIPPED_PARTS:
            continue
        for child_name, child in list(module.named_children()):
            linear = _as_linear(child)
            if linear is not None:
                setattr(module, child_name, Int8Linear.from_linear(linear))
                replaced += 1
    return replaced


def _as_linear(module: nn.Module) -> nn.Linear | None:
    if isinstance(module, nn.Linear):
        return module
    if type(module).__name__ == "Conv1D":  # GPT-2's linear layer, weight stored (in, out)
        conv: Any = module
        weight = conv.weight.detach()
        linear = nn.Linear(weight.shape[0], weight.shape[1], device="meta")
        linear.weight = nn.Parameter(weight.t(), requires_grad=False)
        linear.bias = nn.Parameter(conv.bias.detach(), requires_grad=False)
        return linear
    return None


def apply_compute_type(model: nn.Module, compute_type: str) -> nn.Module:
    """Convert a loaded ``model`` (in place) to a resolved ``compute_type``.

    Float tensors outside the int8 layers are cast to the type's activation dtype (so a
    bfloat16 checkpoint asked for as ``int8`` runs its other parts in float32). On a CPU the
    int8 layers pack themselves for oneDNN's int8 linear on first use (:class:`Int8Weight`).
    """
    if is_int8(compute_type):
        count = quantize_linears(model)
        logger.info("int8: %d linear layers quantised", count)
    dtype = activation_dtype(compute_type)
    group: list[Int8Weight] = []  # filled as the loop goes: every layer shares the one list
    for module in model.modules():
        if isinstance(module, Int8Weight):
            # int8 weight, float32 scales and bias: its output takes x's dtype; on a CPU with
            # oneDNN the model's first call of any int8 layer packs them all (see Int8Weight)
            module.pack_on_use = True
            group.append(module)
            module.pack_group = group
            continue
        for param in module.parameters(recurse=False):
            if param.is_floating_point():
                # a copy even when the dtype stays: a tensor still backed by the memory-mapped
                # checkpoint keeps the whole file mapped (int8 1B: 5.6 GB resident, not 1.2)
                param.data = param.data.to(dtype, copy=True)
        for name, buffer in module.named_buffers(recurse=False):
            if buffer.is_floating_point():
                setattr(module, name, buffer.to(dtype, copy=True))
    model.compute_type = compute_type  # type: ignore[assignment]
    release_freed_memory()
    return model


# -- converted checkpoints (mmspeech convert) ----------------------------------------------------

CONFIG_KEY = "mmspeech"  # config.json: {"mmspeech": {"compute_type": "int8", "version": "…"}}


def record_compute_type(config: dict[str, Any], compute_type: str) -> None:
    """Mark a ``config.json`` dict as a checkpoint converted to ``compute_type``."""
    from mmspeech import __version__

    config[CONFIG_KEY] = {"compute_type": compute_type, "version": __version__}


def stored_compute_type(config: object) -> str | None:
    """The compute type a converted checkpoint was written in (None: a plain checkpoint)."""
    block = getattr(config, "extra", {}).get(CONFIG_KEY)
    if not isinstance(block, dict):
        return None
    value = block.get("compute_type")
    if value is not None and value not in COMPUTE_TYPES:
        raise ConfigError(
            f"config.json says compute_type {value!r}, which this version of mmspeech does not "
            f"know ({', '.join(COMPUTE_TYPES)}); upgrade mmspeech or convert the checkpoint again."
        )
    return value if isinstance(value, str) else None


def check_stored_compute_type(stored: str, wanted: str, ref: str) -> None:
    """An int8 checkpoint loads only as an int8 type: its float weights are gone.

    Raises:
        ConfigError: a float compute type asked of an int8 checkpoint.
    """
    if is_int8(stored) and not is_int8(wanted):
        raise ConfigError(
            f"{ref} was converted to int8: its original float weights are not in it, so it "
            f"cannot run as {wanted}. Load it with compute_type int8 or int8_bfloat16 (or "
            "int8_float16 on CUDA), or load the original checkpoint for a float type."
        )
