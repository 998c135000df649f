"""Checkpoint tensors <-> Flax parameter pytrees, with numpy only (no torch for safetensors).

Flax modules carry the checkpoint's module names, so a parameter's path joined by dots is its
checkpoint key once the leaf is renamed: ``kernel`` -> ``weight`` (transposed: (in, out) for a
linear layer, (kernel, in, out) for a convolution), ``scale`` and ``embedding`` -> ``weight``;
``weight``/``bias`` stay; BatchNorm statistics ``mean``/``var`` -> ``running_mean``/``running_var``.
Weight norm is folded on reading (both spellings, :data:`WEIGHT_NORM_SUFFIXES`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmspeech.checkpoints.weights import WEIGHT_NORM_SUFFIXES
from mmspeech.errors import CheckpointError, MissingDependencyError

logger = logging.getLogger(__name__)

State = dict[str, np.ndarray]
_STATS = {"mean": "running_mean", "var": "running_var"}


def read_tensors(path: str | os.PathLike[str]) -> State:
    """All tensors of one ``.safetensors`` file (numpy) or ``.bin`` file (needs torch)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"Cannot read weights from {path}: {exc}") from exc
        except TypeError as exc:  # bfloat16 has no numpy dtype: go through torch
            logger.info("Reading %s through torch (%s)", path, exc)
    try:
        from mmspeech.checkpoints.weights import read_tensors as read_with_torch
    except ImportError as exc:
        raise MissingDependencyError(
            f"Reading {path.name} needs torch (pip install torch); safetensors files do not."
        ) from exc
    return {k: v.float().numpy() if v.dtype.is_floating_point else v.numpy()
            for k, v in read_with_torch(path).items()}  # fmt: skip


def read_state(paths: Iterable[str | os.PathLike[str]]) -> State:
    """Merge the tensors of one or more weight files (shards)."""
    state: State = {}
    for path in paths:
        state.update(read_tensors(path))
    return state


def fold_weight_norms(state: State) -> None:
    """Replace every (g, v) weight-norm pair, in either spelling, by ``g * v / ||v||``."""
    for g_suffix, v_suffix in WEIGHT_NORM_SUFFIXES:
        for g_key in [k for k in state if k.endswith("." + g_suffix)]:
            module = g_key[: -len(g_suffix) - 1]
            v_key = f"{module}.{v_suffix}"
            if v_key not in state:
                raise CheckpointError(f"{module} has only half of its weight-norm pair.")
            g = state.pop(g_key).astype(np.float32)
            v = state.pop(v_key).astype(np.float32)
            dims = tuple(d for d in range(v.ndim) if d >= g.ndim or g.shape[d] == 1)
            state[f"{module}.weight"] = g * v / np.sqrt((v * v).sum(axis=dims, keepdims=True))


def unfold_weight_norm(state: State, module: str, dim: int) -> None:
    """``weight`` -> ``weight_g`` (norm over all but ``dim``) and ``weight_v`` for saving."""
    weight = state.pop(f"{module}.weight")
    dims = tuple(d for d in range(weight.ndim) if d != dim)
    g_suffix, v_suffix = WEIGHT_NORM_SUFFIXES[0]
    state[f"{module}.{g_suffix}"] = np.sqrt((weight * weight).sum(axis=dims, keepdims=True))
    state[f"{module}.{v_suffix}"] = weight


def _key_of(path: tuple[str, ...], collection: str) -> str:
    leaf = path[-1]
    if collection == "batch_stats":
        leaf = _STATS[leaf]
    elif leaf in ("kernel", "scale", "embedding"):
        leaf = "weight"
    return ".".join((*path[:-1], leaf))


def _to_checkpoint_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "kernel":
        return value.T if value.ndim == 2 else value.transpose(2, 1, 0)
    return value


def flatten(variables: Mapping[str, Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Checkpoint key -> (collection, parameter path) for every leaf of ``variables``."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}

    def walk(tree: Mapping[str, Any], collection: str, path: tuple[str, ...]) -> None:
        for name, value in tree.items():
            if isinstance(value, Mapping):
                walk(value, collection, (*path, name))
            else:
                out[_key_of((*path, name), collection)] = (collection, (*path, name))

    for collection, tree in variables.items():
        walk(tree, collection, ())
    return out


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for name in path:
        tree = tree[name]
    return tree


def to_state(variables: Mapping[str, Any], prefix: str = "") -> State:
    """The checkpoint tensors (float32 numpy, checkpoint layout) of Flax ``variables``."""
    state: State = {}
    for key, (collection, path) in flatten(variables).items():
        value = np.asarray(_get(variables[collection], path), dtype=np.float32)
        state[prefix + key] = np.ascontiguousarray(_to_checkpoint_layout(path[-1], value))
    return state


def from_state(
    state: Mapping[str, np.ndarray],
    template: Mapping[str, Any],
    source: str,
    fresh: Mapping[str, Any] | None = None,
    allow_missing: Iterable[str] = (),
) -> dict[str, Any]:
    """Flax variables shaped like ``template`` filled from checkpoint ``state`` (strict).

    Args:
        template: variables (or their shapes) of the module, e.g. from ``jax.eval_shape``.
        fresh: initialised variables to take the ``allow_missing`` keys from.
        allow_missing: checkpoint keys that may be absent (then taken from ``fresh``).

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped tensors.
    """
    keys = flatten(template)
    allowed = set(allow_missing)
    missing = sorted(set(keys) - set(state) - allowed)
    unexpected = sorted(set(state) - set(keys))
    wrong = []
    out: dict[str, Any] = {}
    for key, (collection, path) in keys.items():
        expected = tuple(_get(template[collection], path).shape)
        if key in state:
            value = np.asarray(state[key], dtype=np.float32)
            if path[-1] == "kernel":  # checkpoint layout -> Flax layout
                value = value.T if value.ndim == 2 else value.transpose(2, 1, 0)
            if tuple(value.shape) != expected:
                wrong.append(f"{key}: checkpoint {tuple(state[key].shape)}, model {expected}")
                continue
        elif key in allowed and fresh is not None:
            value = np.asarray(_get(fresh[collection], path))
        else:
            continue
        node = out.setdefault(collection, {})
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing ({len(missing)}): " + ", ".join(missing[:20]))
        if unexpected:
            parts.append(f"unexpected ({len(unexpected)}): " + ", ".join(unexpected[:20]))
        if wrong:
            parts.append("wrong shape: " + ", ".join(wrong[:20]))
        raise CheckpointError(
            f"{source} does not match the Flax model: " + "; ".join(parts)
            + ". Check that the weights and config.json belong together."
        )  # fmt: skip
    return out


def write_safetensors(state: State, path: str | os.PathLike[str]) -> None:
    """Write tensors with the ``format: pt`` metadata the PyTorch loaders expect."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path),
              metadata={"format": "pt"})  # fmt: skip
