"""Reading and writing weight files, and the weight-norm spelling of convolution weights."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmspeech.errors import CheckpointError
from mmspeech.files import atomic_path

logger = logging.getLogger(__name__)

# Both spellings of a weight-normed parameter: (magnitude g, direction v).
WEIGHT_NORM_SUFFIXES = (
    ("weight_g", "weight_v"),  # torch.nn.utils.weight_norm: older files, all real MMS repos
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),  # newer
)


def read_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """All tensors of one ``.safetensors`` or ``.bin`` file (``.bin`` only with weights_only)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) pickle format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CheckpointError(f"Cannot read weights from {path}: {exc}") from exc
    except RuntimeError as exc:
        raise CheckpointError(f"Cannot read weights from {path}: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat name -> tensor dictionary.")
    return state


def read_state_dict(paths: Iterable[str | os.PathLike[str]]) -> dict[str, torch.Tensor]:
    """Merge the tensors of one or more weight files (shards)."""
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        state.update(read_tensors(path))
    return state


def write_safetensors(
    state: dict[str, torch.Tensor], path: str | os.PathLike[str], mode: int | None = None
) -> None:
    """Write tensors as safetensors with the ``format: pt`` metadata the reference expects.

    Atomically (:func:`mmspeech.files.atomic_path`: a reader or a crash never sees half a file)
    and with ``mode``, by default a new file's usual permissions (``save_file`` alone gives 0600).
    """
    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in state.items()}
    with atomic_path(path, mode) as temporary:
        save_file(contiguous, str(temporary), metadata={"format": "pt"})


def _norm_except(v: torch.Tensor, dim: int) -> torch.Tensor:
    """L2 norm of ``v`` over every dimension except ``dim``, kept for broadcasting."""
    dims = [d for d in range(v.dim()) if d != dim]
    return v.norm(p=2, dim=dims, keepdim=True)


def fold_weight_norm(state: dict[str, torch.Tensor], module_path: str) -> None:
    """Replace ``module_path``'s (g, v) pair, in either spelling, by ``weight = g * v / ||v||``.

    The norm is taken over every dimension where ``g`` has size 1. Done in float32 and in place;
    the folded weight stays float32 (or float64) even when ``g`` and ``v`` are float16: rounded
    back to half precision, a trained position conv's weight moved by ~4e-4 and a demo model's
    logits by ~2e-3 from the reference, which computes the fold in the model's dtype. Does
    nothing when the module already holds a plain ``weight``.
    """
    for g_suffix, v_suffix in WEIGHT_NORM_SUFFIXES:
        g_key, v_key = f"{module_path}.{g_suffix}", f"{module_path}.{v_suffix}"
        if g_key in state and v_key in state:
            g, v = state.pop(g_key), state.pop(v_key)
            if g.dim() != v.dim():
                raise CheckpointError(
                    f"{g_key} has shape {tuple(g.shape)}, incompatible with {v_key} "
                    f"{tuple(v.shape)}."
                )
            kept = [d for d in range(g.dim()) if g.shape[d] != 1]
            dims = [d for d in range(v.dim()) if d not in kept]
            dtype = torch.promote_types(v.dtype, torch.float32)
            g, v = g.to(dtype), v.to(dtype)
            state[f"{module_path}.weight"] = g * v / v.norm(p=2, dim=dims, keepdim=True)
            return
        if g_key in state or v_key in state:
            raise CheckpointError(f"{module_path} has only half of its weight-norm pair.")


def fold_all_weight_norms(state: dict[str, torch.Tensor]) -> None:
    """Fold every weight-norm pair in ``state``, in either spelling (:func:`fold_weight_norm`)."""
    suffixes = tuple("." + g for g, _ in WEIGHT_NORM_SUFFIXES)
    for key in [k for k in state if k.endswith(suffixes)]:
        module_path = next(key[: -len(s)] for s in suffixes if key.endswith(s))
        fold_weight_norm(state, module_path)


def unfold_weight_norm(
    state: dict[str, torch.Tensor],
    module_path: str,
    dim: int,
    spelling: tuple[str, str] = WEIGHT_NORM_SUFFIXES[0],
) -> None:
    """The inverse for saving: ``weight`` -> ``g`` (norm over all but ``dim``) and ``v``.

    ``spelling`` is one of :data:`WEIGHT_NORM_SUFFIXES`; the default, the older
    ``weight_g``/``weight_v``, is read by every version of the reference (newer versions rename
    it on load).
    """
    weight = state.pop(f"{module_path}.weight")
    g_suffix, v_suffix = spelling
    state[f"{module_path}.{g_suffix}"] = _norm_except(weight.float(), dim).to(weight.dtype)
    state[f"{module_path}.{v_suffix}"] = weight
