"""``mmspeech convert``: write a checkpoint in a compute type, smaller on disk and in memory.

The directory written holds ``config.json`` (with ``"mmspeech": {"compute_type", "version"}``),
``model.safetensors`` in that type (int8 types: each quantised linear layer as an int8
``weight`` and a float32 ``weight_scale``), the tokenizer and feature-extractor files of the
original, and for MMS checkpoints its language adapters (in the type's float format). Loading it
needs no conversion: the int8 tensors are assigned as they are.

This is mmspeech's own format: the reference library cannot run int8 weights, and the
positional convolution is stored folded (no weight-norm pair).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from mmspeech.checkpoints.adapters import ADAPTER_SAFETENSORS, available_adapters, read_adapter
from mmspeech.checkpoints.compute import (
    activation_dtype,
    apply_compute_type,
    record_compute_type,
)
from mmspeech.checkpoints.options import COMPUTE_TYPES, LoadOptions
from mmspeech.checkpoints.resolve import SAFETENSORS, resolve
from mmspeech.checkpoints.weights import write_safetensors
from mmspeech.errors import ConfigError

logger = logging.getLogger(__name__)

# what a converted directory may be written as ("auto" depends on where it will run)
STORABLE = tuple(t for t in COMPUTE_TYPES if t not in ("auto", "int8_float32"))
# files of a checkpoint besides its weights, copied as they are
SIDE_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "tokenizer.json",
    "vocab.txt",
    "merges.txt",
    "sentencepiece.bpe.model",
    "generation_config.json",
)


def convert_checkpoint(
    ref: str | os.PathLike[str],
    output: str | os.PathLike[str],
    compute_type: str,
    *,
    languages: Sequence[str] | None = None,
    load: LoadOptions | None = None,
) -> Path:
    """Convert the checkpoint at ``ref`` to ``compute_type`` and write it to ``output``.

    Args:
        ref: a checkpoint directory or hub id.
        output: the directory to write (created; must not hold a checkpoint already).
        compute_type: one of :data:`STORABLE`.
        languages: MMS adapters to convert (None: every adapter file of a local checkpoint;
            a hub checkpoint's adapters must be named).
        load: hub settings for ``ref``.

    Returns:
        The output directory.
    """
    from mmspeech.auto import AutoModel

    if compute_type not in STORABLE:
        raise ConfigError(
            f"Cannot write a checkpoint as {compute_type!r}; choose one of: {', '.join(STORABLE)}."
        )
    out = Path(output)
    if (out / "config.json").exists():
        raise ConfigError(f"{out} already holds a checkpoint; choose an empty directory.")
    load = load or LoadOptions()
    files = resolve(ref, **load.hub)
    model_class = AutoModel.model_class(ref, **load.hub)
    options = LoadOptions(device="cpu", **load.hub)
    model = model_class.from_pretrained(ref, load_options=options)
    if getattr(model, "compute_type", "float32") != "float32":
        raise ConfigError(f"{ref} is already a converted checkpoint; convert the original.")
    apply_compute_type(model, compute_type)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.pop("_name_or_path", None)
    config["architectures"] = [type(model).__name__]
    record_compute_type(config, compute_type)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_safetensors(model.state_dict(), out / SAFETENSORS)
    for name in SIDE_FILES:
        found = files.path(name)
        if found is not None:
            shutil.copyfile(found, out / name)
    if getattr(model.config, "adapter_attn_dim", None) is not None:
        wanted = list(languages) if languages is not None else available_adapters(files)
        dtype = torch.float32 if compute_type == "int8" else activation_dtype(compute_type)
        for lang in wanted:
            state = {k: v.to(dtype) for k, v in read_adapter(files, lang).items()}
            write_safetensors(state, out / ADAPTER_SAFETENSORS.format(lang))
        logger.info("converted %d adapters", len(wanted))
    return out
