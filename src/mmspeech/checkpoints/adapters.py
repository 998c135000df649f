"""MMS language adapters: ``adapter.<lang>.safetensors`` files next to the base checkpoint.

Each file holds, for one language, every block's ``adapter_layer.{norm,linear_1,linear_2}`` and the
``lm_head`` over that language's characters (FORMATS.md). Switching language copies those tensors
into the loaded model; files read once are kept in memory so switching back costs no I/O.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from mmspeech.checkpoints.resolve import ModelFiles, resolve
from mmspeech.checkpoints.weights import read_tensors, write_safetensors
from mmspeech.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ConfigError,
    LanguageError,
)

if TYPE_CHECKING:
    from mmspeech.models.pretrained import PretrainedModel

logger = logging.getLogger(__name__)

ADAPTER_SAFETENSORS = "adapter.{}.safetensors"
ADAPTER_BIN = "adapter.{}.bin"
_LANG = re.compile(r"[\w-]+")


def _adapter_state(model: PretrainedModel) -> dict[str, torch.Tensor]:
    state = getattr(model, "adapter_state", None)
    if state is None:
        raise ConfigError(f"{type(model).__name__} has no language adapters to load or save.")
    return state()


def _source(model: PretrainedModel) -> ModelFiles:
    files = model.source
    if isinstance(files, ModelFiles):
        return files
    name = model.config.name_or_path
    if not name:
        raise ConfigError(
            "This model was not loaded from a checkpoint, so there is nowhere to find adapter "
            "files; load it with from_pretrained(...) first."
        )
    return resolve(name)


def available_adapters(files: ModelFiles) -> list[str]:
    """Languages with an adapter file, for a local checkpoint (hub repos are not listed)."""
    if files.directory is None:
        return []
    found = {
        path.name.split(".")[1]
        for pattern in ("adapter.*.safetensors", "adapter.*.bin")
        for path in files.directory.glob(pattern)
    }
    return sorted(found)


def read_adapter(files: ModelFiles, lang: str) -> dict[str, torch.Tensor]:
    """The tensors of ``lang``'s adapter file (safetensors preferred, then .bin)."""
    if not _LANG.fullmatch(lang):
        raise LanguageError(f"{lang!r} is not a language code (expected e.g. 'fra').")
    names = [pattern.format(lang) for pattern in (ADAPTER_SAFETENSORS, ADAPTER_BIN)]
    for name in names:
        path = files.path(name)
        if path is not None:
            return read_tensors(path)
    if not files.is_local and any(name in files.not_cached for name in names):
        # offline or unreachable: the repository may well have it, it is just not cached
        raise CheckpointNotFoundError(files.missing_message(names, f"the {lang} adapter"))
    import difflib

    known = available_adapters(files)
    hint = ""
    if known:
        close = difflib.get_close_matches(lang, known, n=5, cutoff=0.5)
        hint = f" Closest available: {', '.join(close)}." if close else ""
        hint += f" ({len(known)} adapters in this checkpoint.)"
    raise LanguageError(
        f"No adapter for language {lang!r} in {files.ref} (looked for "
        f"{ADAPTER_SAFETENSORS.format(lang)} and {ADAPTER_BIN.format(lang)}).{hint}"
    )


def load_adapter(model: PretrainedModel, lang: str, *, force_load: bool = True) -> None:
    """Switch ``model`` to language ``lang``: copy its adapter and head into the model.

    Raises:
        LanguageError: no adapter file for ``lang``.
        CheckpointError: the file's keys or shapes do not fit the model.
    """
    if getattr(model, "target_lang", None) == lang and not force_load:
        return
    started = time.perf_counter()
    current = _adapter_state(model)
    cache: dict[str, dict[str, torch.Tensor]] = model.__dict__.setdefault("_adapter_cache", {})
    state = cache.get(lang)
    if state is None:
        files = _source(model)
        state = read_adapter(files, lang)
        check_adapter(state, current, f"adapter.{lang} of {files.ref}")
        # kept in the model's compute type (half the memory per language in bfloat16)
        dtype = current["lm_head.weight"].dtype
        state = {key: tensor.to(dtype) for key, tensor in state.items()}
        cache[lang] = state
    rows = state["lm_head.weight"].shape[0]
    lm_head = model.lm_head
    assert isinstance(lm_head, nn.Linear)
    if rows != lm_head.out_features:
        model.lm_head = nn.utils.skip_init(  # its values are overwritten just below
            nn.Linear,
            lm_head.in_features,
            rows,
            device=lm_head.weight.device,
            dtype=lm_head.weight.dtype,
        )
        model.config.vocab_size = rows
        current = _adapter_state(model)
    with torch.no_grad():
        for key, tensor in state.items():
            current[key].copy_(tensor)
    model.target_lang = lang  # type: ignore[assignment]
    logger.info("Adapter %s loaded in %.1f ms", lang, 1000 * (time.perf_counter() - started))


def check_adapter(
    state: dict[str, torch.Tensor], current: dict[str, torch.Tensor], source: str
) -> None:
    """The adapter file must hold exactly the model's adapter keys, in shapes that fit."""
    missing = sorted(set(current) - set(state))
    unexpected = sorted(set(state) - set(current))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit this model: missing {missing[:10]}, unexpected "
            f"{unexpected[:10]}."
        )
    bad = [
        f"{key}: file {tuple(state[key].shape)}, model {tuple(current[key].shape)}"
        for key in state
        if not key.startswith("lm_head.") and state[key].shape != current[key].shape
    ]
    head = state["lm_head.weight"].shape
    if state["lm_head.bias"].shape != head[:1] or head[1:] != current["lm_head.weight"].shape[1:]:
        bad.append(f"lm_head: weight {tuple(head)}, bias {tuple(state['lm_head.bias'].shape)}")
    if bad:
        raise CheckpointError(f"{source} has tensors of the wrong shape: " + "; ".join(bad))


def save_adapter(
    model: PretrainedModel, directory: str | os.PathLike[str], lang: str, mode: int | None = None
) -> Path:
    """Write the current adapter and head as ``adapter.<lang>.safetensors`` (reference keys),
    atomically, with permissions ``mode`` (default: a new file's usual ones)."""
    if not _LANG.fullmatch(lang):
        raise LanguageError(f"{lang!r} is not a language code (expected e.g. 'fra').")
    path = Path(directory) / ADAPTER_SAFETENSORS.format(lang)
    write_safetensors(_adapter_state(model), path, mode)
    return path
