"""Build a model from a checkpoint, strictly, and write one back in the reference's format.

Each model family declares how its checkpoint keys differ from its module names
(:class:`FamilyKeys`); everything else must match exactly, or loading fails with the lists of
missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from mmspeech.checkpoints.compute import (
    apply_compute_type,
    check_stored_compute_type,
    is_int8,
    quantize_linears,
    record_compute_type,
    resolve_compute_type,
    stored_compute_type,
)
from mmspeech.checkpoints.options import LOAD_FIELDS, LoadOptions
from mmspeech.checkpoints.resolve import ModelFiles, resolve
from mmspeech.checkpoints.weights import (
    WEIGHT_NORM_SUFFIXES,
    fold_all_weight_norms,
    read_state_dict,
    unfold_weight_norm,
    write_safetensors,
)
from mmspeech.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from mmspeech.models.pretrained import PretrainedModel

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound="PretrainedModel")


@dataclass(frozen=True)
class FamilyKeys:
    """How a family's checkpoint keys relate to its module names (relative to the bare model)."""

    # (module path or fnmatch pattern, dim) written with weight norm on save
    weight_norm: tuple[tuple[str, int], ...]
    droppable: tuple[str, ...]  # checkpoint-only key prefixes inference ignores (pretraining)
    optional: tuple[str, ...]  # module keys a checkpoint may lack (initialised fresh, quietly)
    saves_weight_norm: Callable[[Any], bool] = lambda config: True  # config -> unfold on save?
    weight_norm_spelling: tuple[str, str] = WEIGHT_NORM_SUFFIXES[0]  # (g, v) key suffixes on save


_WAV2VEC2_KEYS = FamilyKeys(
    weight_norm=(("encoder.pos_conv_embed.conv", 2),),
    droppable=("quantizer.", "project_q.", "project_hid.", "masked_spec_embed"),
    optional=("masked_spec_embed", "num_batches_tracked"),
)
FAMILY_KEYS: dict[str, FamilyKeys] = {
    # wav2vec2/HuBERT encoder under "encoder."; a tied LM head has no tensor of its own, so a
    # checkpoint's copy (BART "lm_head.", BERT "cls.predictions.decoder.") is dropped if tied.
    "speech-encoder-decoder": FamilyKeys(
        weight_norm=(("encoder.encoder.pos_conv_embed.conv", 2),),
        droppable=(
            *(f"encoder.{p}" for p in _WAV2VEC2_KEYS.droppable),
            "decoder.lm_head.",
            "decoder.cls.predictions.decoder.",
        ),
        optional=_WAV2VEC2_KEYS.optional,
        saves_weight_norm=lambda config: not getattr(config.encoder, "conv_pos_batch_norm", False),
    ),
    # VITS: module names are the checkpoint names; weight norm is folded on load and written back
    # on save for the convs the reference weight-norms (every WaveNet's, in the flow and the
    # posterior encoder; its HiFi-GAN has plain weights), in the spelling it saves itself.
    "vits": FamilyKeys(
        weight_norm=(
            ("*wavenet.in_layers.*", 0),
            ("*wavenet.res_skip_layers.*", 0),
            ("*wavenet.cond_layer", 0),
        ),
        droppable=(),
        optional=(),
        weight_norm_spelling=WEIGHT_NORM_SUFFIXES[1],
    ),
    "wav2vec2": _WAV2VEC2_KEYS,
    "hubert": FamilyKeys(
        weight_norm=_WAV2VEC2_KEYS.weight_norm,
        droppable=(*_WAV2VEC2_KEYS.droppable, "label_embeddings_concat", "final_proj."),
        optional=_WAV2VEC2_KEYS.optional,
        # with a BatchNorm before it, HuBERT's position conv has no weight norm
        saves_weight_norm=lambda config: not config.conv_pos_batch_norm,
    ),
}


def _family_of(model: PretrainedModel) -> FamilyKeys:
    return FAMILY_KEYS[model.config.model_type]


def _base_prefix(model: nn.Module) -> str:
    """ "wav2vec2." for a task model whose encoder lives under that attribute; "" for a bare one."""
    prefix = getattr(model, "base_prefix", "")
    return f"{prefix}." if prefix and hasattr(model, prefix) else ""


def read_config(files: ModelFiles, config_class: type[Any], overrides: dict[str, Any]) -> Any:
    """Parse ``config.json``, checking its ``model_type`` against the model class."""
    data = files.read_json("config.json")
    if data is None:
        files.require("config.json", "the model configuration")
        raise AssertionError("unreachable")
    found = data.get("model_type")
    if found is not None and found != config_class.model_type:
        raise CheckpointError(
            f"{files.ref} is a '{found}' checkpoint, but this class loads "
            f"'{config_class.model_type}' checkpoints. Use the matching class or AutoModel."
        )
    data = {**data, **overrides}
    config = config_class.from_dict(data)
    config.extra["_name_or_path"] = files.ref
    return config


def adapt_keys(state: dict[str, torch.Tensor], model: PretrainedModel) -> tuple[list[str], bool]:
    """Rename checkpoint keys to the model's names, in place.

    Returns the keys dropped, and whether the checkpoint was a bare encoder loaded into a task
    model (whose heads are then initialised fresh).

    Handles a bare encoder checkpoint loaded into a task model (adds the prefix) and a task
    checkpoint loaded into a bare model (strips it, drops the heads), then folds weight norm and
    drops the family's pretraining-only tensors.
    """
    prefix = _base_prefix(model)
    own_prefix = f"{model.base_prefix}." if model.base_prefix else ""
    dropped: list[str] = []
    has_prefixed = any(key.startswith(own_prefix) for key in state) if own_prefix else False
    from_bare = bool(prefix) and not has_prefixed
    if from_bare:
        # a bare-encoder checkpoint (e.g. facebook/mms-300m) into a task model
        for key in list(state):
            state[prefix + key] = state.pop(key)
    elif not prefix and has_prefixed:
        # a task checkpoint into the bare encoder: keep the encoder, drop the heads
        for key in list(state):
            tensor = state.pop(key)
            if key.startswith(own_prefix):
                state[key[len(own_prefix) :]] = tensor
            else:
                dropped.append(key)
    family = _family_of(model)
    fold_all_weight_norms(state)  # every (g, v) pair, whatever the family
    expected = model.state_dict()
    for key in list(state):
        if key in expected:
            continue
        bare = key[len(prefix) :] if key.startswith(prefix) else key
        if any(bare.startswith(p) for p in family.droppable) or any(
            key.startswith(p) for p in family.droppable
        ):
            del state[key]
            dropped.append(key)
    return dropped, from_bare


def _init_fresh(model: nn.Module, names: list[str], std: float) -> None:
    """Materialise and initialise parameters/buffers that the checkpoint did not provide."""
    for name in names:
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        old = getattr(owner, attr)
        fresh = torch.empty(old.shape, dtype=old.dtype, device="cpu")
        if attr == "num_batches_tracked":
            fresh.zero_()
        elif isinstance(owner, nn.LayerNorm | nn.GroupNorm | nn.BatchNorm1d):
            fresh.fill_(1.0 if attr in ("weight", "running_var") else 0.0)
        elif attr == "bias":
            fresh.zero_()
        elif attr == "masked_spec_embed":
            fresh.uniform_()
        else:
            fresh.normal_(0.0, std)
        if isinstance(old, nn.Parameter):
            setattr(owner, attr, nn.Parameter(fresh, requires_grad=old.requires_grad))
        else:
            owner.register_buffer(attr, fresh)


def load_state_strict(
    model: PretrainedModel,
    state: dict[str, torch.Tensor],
    *,
    ignore_mismatched_sizes: bool = False,
    fresh_heads_allowed: bool = False,
    source: str = "the checkpoint",
) -> None:
    """Load ``state`` (already adapted) into ``model`` (possibly on the meta device).

    Fails listing missing, unexpected and mis-shaped keys. A task model loaded from a bare
    encoder gets fresh heads (with a warning); ``ignore_mismatched_sizes`` re-initialises
    mis-shaped tensors instead of failing (as the reference does).
    """
    expected = model.state_dict()
    family = _family_of(model)
    prefix = _base_prefix(model)
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(state[key].shape)}, model {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    optional = [key for key in missing if any(key.endswith(p) for p in family.optional)]
    fresh_heads = [
        key for key in missing if fresh_heads_allowed and prefix and not key.startswith(prefix)
    ]
    hard_missing = [key for key in missing if key not in optional and key not in fresh_heads]
    if mismatched and not ignore_mismatched_sizes:
        raise CheckpointError(
            f"Weights in {source} have the wrong shape for this config:\n  "
            + "\n  ".join(mismatched)
            + "\nPass ignore_mismatched_sizes=True to re-initialise them instead."
        )
    if hard_missing or unexpected:
        parts = []
        if hard_missing:
            parts.append(f"missing ({len(hard_missing)}): " + ", ".join(hard_missing[:20]))
        if unexpected:
            parts.append(f"unexpected ({len(unexpected)}): " + ", ".join(unexpected[:20]))
        raise CheckpointError(
            f"{source} does not match {type(model).__name__}: " + "; ".join(parts)
        )
    reinit = [m.split(":")[0] for m in mismatched]
    for key in reinit:
        del state[key]
    if fresh_heads or reinit:
        logger.warning(
            "Newly initialised from %s (train them before use): %s",
            source,
            ", ".join(fresh_heads + reinit),
        )
    model.load_state_dict(state, strict=False, assign=True)
    _init_fresh(model, optional + fresh_heads + reinit, model.config.initializer_range)


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(value, torch.dtype):
            raise ConfigError(f"Unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16'.")
        return value
    return dtype


def check_config_overrides(config_class: type[Any], overrides: dict[str, Any]) -> None:
    """Keyword arguments meant as config fields must be fields of ``config_class``.

    Raises:
        TypeError: a keyword that is neither a load setting nor a config field (the reference
            raises TypeError for an unexpected keyword too).
    """
    known = {f.name for f in dataclasses.fields(config_class)} - {"extra"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}: neither load "
            f"settings ({', '.join(LOAD_FIELDS)}) nor fields of {config_class.__name__}"
        )


def load_model(
    cls: type[ModelT],
    ref: str | os.PathLike[str],
    *,
    target_lang: str | None = None,
    ignore_mismatched_sizes: bool = False,
    load: LoadOptions | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> ModelT:
    """Build ``cls`` from the checkpoint at ``ref`` (directory or hub id), weights strictly.

    The model is built on the meta device and the checkpoint tensors are assigned directly,
    so no time or memory goes into a random initialisation that would be overwritten. Then it
    moves to ``load.device`` and is converted to ``load.compute_type`` (or cast to
    ``load.dtype``); with ``target_lang`` that language's adapter and head are loaded last.
    """
    load = load or LoadOptions()
    config_overrides = config_overrides or {}
    check_config_overrides(cls.config_class, config_overrides)  # type: ignore[attr-defined]
    device = load.torch_device(default="cpu")  # the reference loads on the CPU by default
    files = resolve(ref, **load.hub)
    config = read_config(files, cls.config_class, config_overrides)  # type: ignore[attr-defined]
    if target_lang is not None and getattr(config, "adapter_attn_dim", None) is None:
        raise ConfigError(
            f"target_lang={target_lang!r} was given, but {files.ref} has no language "
            "adapters (adapter_attn_dim is not set in its config)."
        )
    # a converted checkpoint runs in its own type unless another is asked for
    stored = stored_compute_type(config)
    if load.compute_type is None and load.dtype is None and stored is not None:
        try:
            compute_type = resolve_compute_type(stored, device)
        except ConfigError:  # e.g. float16 on a CPU: the nearest type this device runs
            compute_type = "int8" if is_int8(stored) else "float32"
            logger.info("%s is stored as %s; running it as %s", files.ref, stored, compute_type)
    else:
        compute_type = resolve_compute_type(load.compute_type, device)
    with torch.device("meta"):
        model = cls(config)
    state = read_state_dict(files.weight_files())
    if stored is not None and is_int8(stored):
        check_stored_compute_type(stored, compute_type, files.ref)
        # the layout of the stored int8 tensors (an earlier mmspeech kept the convs float)
        convs = any(key.endswith("conv.weight_scale") for key in state)
        quantize_linears(model, convs=convs)
    dropped, from_bare = adapt_keys(state, model)
    if dropped:
        logger.info(
            "Ignored %d checkpoint tensors not used by %s: %s",
            len(dropped),
            cls.__name__,
            ", ".join(dropped[:10]),
        )
    load_state_strict(
        model,
        state,
        ignore_mismatched_sizes=ignore_mismatched_sizes,
        fresh_heads_allowed=from_bare,
        source=str(files.ref),
    )
    model.source = files  # where load_adapter finds adapter files
    finish_load(model, device, compute_type, load.dtype)
    if target_lang is not None:
        model.load_adapter(target_lang)
    return model


def finish_load(
    model: PretrainedModel, device: torch.device, compute_type: str, dtype: str | None
) -> None:
    """Evaluation mode on ``device``, in ``compute_type`` (resolved), or cast to ``dtype``."""
    model.eval()
    model.to(device=device)
    if compute_type == "float32":
        model.to(dtype=_resolve_dtype(dtype))
        model.compute_type = str(model.dtype).removeprefix("torch.")
    else:
        apply_compute_type(model, compute_type)


def checkpoint_state(model: PretrainedModel) -> dict[str, torch.Tensor]:
    """The model's tensors under the reference's checkpoint names (weight norm unfolded)."""
    state = {key: tensor for key, tensor in model.state_dict().items()}
    prefix = _base_prefix(model)
    family = _family_of(model)
    if family.saves_weight_norm(model.config):
        for pattern, dim in family.weight_norm:
            modules = [key.removesuffix(".weight") for key in state if key.endswith(".weight")]
            for module_path in fnmatch.filter(modules, prefix + pattern):
                unfold_weight_norm(state, module_path, dim, family.weight_norm_spelling)
    return state


def save_model(model: PretrainedModel, directory: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` that the reference loads (a model in
    an int8 compute type writes mmspeech's converted format, as ``mmspeech convert`` does)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.pop("_name_or_path", None)
    config["architectures"] = [type(model).__name__]
    config["dtype"] = str(model.dtype).removeprefix("torch.")
    compute_type = getattr(model, "compute_type", "float32")
    if is_int8(compute_type):  # its int8 layers' layout is ours: the loader must know
        record_compute_type(config, compute_type)
    with open(out / "config.json", "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
        handle.write("\n")
    write_safetensors(checkpoint_state(model), out / "model.safetensors")
    return out
