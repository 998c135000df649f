"""The transformers-compatible face of every model: ``from_pretrained`` / ``save_pretrained``.

Models themselves know nothing about files: these methods delegate to :mod:`mmspeech.checkpoints`
(imported lazily, so building a model never touches the hub code).
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
from torch import nn

ModelT = TypeVar("ModelT", bound="PretrainedModel")


class PretrainedModel(nn.Module):
    """Base of mmspeech models: an ``nn.Module`` with the HF loading and saving entry points."""

    config: Any
    base_prefix: str = ""  # attribute holding the bare encoder in task models ("wav2vec2", …)

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        ref: str | os.PathLike[str],
        *,
        target_lang: str | None = None,
        ignore_mismatched_sizes: bool = False,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        **config_overrides: Any,
    ) -> ModelT:
        """Load a checkpoint directory or hub id (see :func:`mmspeech.checkpoints.load_model`).

        Args:
            ref: a local checkpoint directory or a hub id such as ``facebook/mms-1b-all``.
            target_lang: MMS adapter language to load after the base (``"fra"``).
            ignore_mismatched_sizes: re-initialise weights whose shapes differ from the config
                instead of failing.
            dtype: parameter dtype (default float32); ``torch_dtype`` is accepted as an alias.
            device: where to put the model (default CPU).
            revision, cache_dir, token, local_files_only: hub download settings.
            **config_overrides: config fields to change before building the model.
        """
        from mmspeech.checkpoints.loading import load_model

        if "torch_dtype" in config_overrides:
            dtype = config_overrides.pop("torch_dtype")
        return load_model(
            cls,
            ref,
            target_lang=target_lang,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            dtype=dtype,
            device=device,
            hub_kwargs={
                "revision": revision,
                "cache_dir": cache_dir,
                "token": token,
                "local_files_only": local_files_only,
            },
            config_overrides=config_overrides,
        )

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write ``config.json`` + ``model.safetensors`` in the reference's format."""
        from mmspeech.checkpoints.loading import save_model

        save_model(self, directory)

    def load_adapter(self, target_lang: str, *, force_load: bool = True) -> None:
        """Switch the MMS language adapter and output head to ``target_lang`` (keeps the base).

        Adapters already loaded once are served from memory.
        """
        from mmspeech.checkpoints.adapters import load_adapter

        load_adapter(self, target_lang, force_load=force_load)

    def save_adapter(self, directory: str | os.PathLike[str], target_lang: str) -> str:
        """Write the current adapter as ``adapter.<target_lang>.safetensors``; returns the path."""
        from mmspeech.checkpoints.adapters import save_adapter

        return str(save_adapter(self, directory, target_lang))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
