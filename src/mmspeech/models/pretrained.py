"""The transformers-compatible face of every model: ``from_pretrained`` / ``save_pretrained``.

Models themselves know nothing about files: these methods delegate to :mod:`mmspeech.checkpoints`
(imported lazily, so building a model never touches the hub code).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

if TYPE_CHECKING:
    from mmspeech.checkpoints.options import LoadOptions
    from mmspeech.checkpoints.resolve import ModelFiles

ModelT = TypeVar("ModelT", bound="PretrainedModel")


class PretrainedModel(nn.Module):
    """Base of mmspeech models: an ``nn.Module`` with the HF loading and saving entry points."""

    config: Any
    base_prefix: str = ""  # attribute holding the bare encoder in task models ("wav2vec2", …)
    # set by the loader: where the checkpoint's files are (adapters are read from there later)
    source: ModelFiles | None = None
    compute_type: str = "float32"  # set by the loader (mmspeech.checkpoints.compute)

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        ref: str | os.PathLike[str],
        *,
        target_lang: str | None = None,
        ignore_mismatched_sizes: bool = False,
        load_options: LoadOptions | None = None,
        **kwargs: Any,
    ) -> ModelT:
        """Load a checkpoint directory or hub id (see :func:`mmspeech.checkpoints.load_model`).

        Args:
            ref: a local checkpoint directory or a hub id such as ``facebook/mms-1b-all``.
            target_lang: MMS adapter language to load after the base (``"fra"``).
            ignore_mismatched_sizes: re-initialise weights whose shapes differ from the config
                instead of failing.
            load_options: device, dtype, compute type and hub settings in one object.
            **kwargs: the fields of :class:`~mmspeech.checkpoints.options.LoadOptions`
                (``device``, ``dtype`` — ``torch_dtype`` is an alias —, ``compute_type``,
                ``revision``, ``cache_dir``, ``token``, ``local_files_only``), and config fields
                to change before building the model. Anything else is a ``TypeError``.
        """
        from mmspeech.checkpoints.loading import load_model
        from mmspeech.checkpoints.options import split_load_kwargs

        if "torch_dtype" in kwargs:
            kwargs["dtype"] = kwargs.pop("torch_dtype")
        load, config_overrides = split_load_kwargs(kwargs, load_options)
        return load_model(
            cls,
            ref,
            target_lang=target_lang,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            load=load,
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
