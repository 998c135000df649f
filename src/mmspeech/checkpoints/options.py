"""Load-time settings: one frozen object for where a model runs, in which number format, and
which hub files it comes from.

``LoadOptions`` is threaded through ``from_pretrained``, the ``load_*`` functions, the one-call
API, the CLI and the server, so none of them spells out the hub keywords or the device rules on
its own. The transformers-shaped faces (``from_pretrained(ref, revision=..., token=...)``)
still take the fields as keywords: :func:`split_load_kwargs` turns them into a ``LoadOptions``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from mmspeech.errors import ConfigError

# hub settings: used for hub ids only (see mmspeech.checkpoints.resolve)
HUB_FIELDS = ("revision", "cache_dir", "token", "local_files_only")
# faster-whisper's names; "auto" is resolved per device (mmspeech.checkpoints.compute)
COMPUTE_TYPES = (
    "auto",
    "float32",
    "bfloat16",
    "float16",
    "int8",
    "int8_float32",
    "int8_bfloat16",
    "int8_float16",
)
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LoadOptions:
    """Where and how a checkpoint is loaded.

    ``dtype`` is the plain parameter cast of the reference (``torch_dtype``); ``compute_type``
    is the number format inference runs in, chosen per part of the model (int8 matrix products
    with float32 norms and softmax, for example). Give one or the other, not both.
    """

    # "cpu", "cuda", "cuda:1"…; None: CUDA when available (load_*, CLI, server), but CPU for
    # from_pretrained, as in the reference
    device: str | None = None
    dtype: str | None = None  # parameter cast: float32, float16, bfloat16; None: float32
    compute_type: str | None = None  # one of COMPUTE_TYPES; None: float32 (or dtype)
    revision: str | None = None  # hub: branch, tag or commit
    cache_dir: str | None = None  # hub: cache directory (default: huggingface_hub's)
    token: str | bool | None = None  # hub: access token (True: the stored login)
    local_files_only: bool = False  # hub: never download, use the cache alone

    def __post_init__(self) -> None:
        if isinstance(self.device, torch.device):
            object.__setattr__(self, "device", str(self.device))
        if isinstance(self.dtype, torch.dtype):
            object.__setattr__(self, "dtype", str(self.dtype).removeprefix("torch."))
        if isinstance(self.cache_dir, os.PathLike):
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))
        if self.dtype is not None:
            dtype = self.dtype.removeprefix("torch.")
            if dtype not in DTYPES:
                raise ConfigError(f"Unknown dtype {self.dtype!r}; expected one of {DTYPES}.")
            object.__setattr__(self, "dtype", dtype)
        if self.compute_type is not None:
            if self.compute_type not in COMPUTE_TYPES:
                raise ConfigError(
                    f"Unknown compute type {self.compute_type!r}; expected one of: "
                    f"{', '.join(COMPUTE_TYPES)}."
                )
            if self.dtype is not None and self.dtype != self.compute_type:
                raise ConfigError(
                    f"dtype={self.dtype!r} and compute_type={self.compute_type!r} disagree; "
                    "give one of them (compute_type chooses the format of each part)."
                )

    @property
    def hub(self) -> dict[str, Any]:
        """The hub settings as keywords of :func:`mmspeech.checkpoints.resolve.resolve`."""
        return {name: getattr(self, name) for name in HUB_FIELDS}

    def torch_device(self, default: str | None = None) -> torch.device:
        """:attr:`device` as a ``torch.device``; when unset, ``default`` (None: CUDA when
        available, see :func:`pick_device`)."""
        return pick_device(self.device if self.device is not None else default)

    def cache_key(self) -> tuple[Any, ...]:
        """What makes two loads of the same reference different models."""
        return (str(self.torch_device()), self.dtype, self.compute_type, *self.hub.values())


LOAD_FIELDS = tuple(f.name for f in fields(LoadOptions))


def load_options(options: LoadOptions | None = None, **overrides: Any) -> LoadOptions:
    """``options`` (or the defaults) with the non-None ``overrides`` applied.

    Raises:
        TypeError: an override that is not a field of :class:`LoadOptions` (as Python does for
            an unexpected keyword argument).
    """
    unknown = sorted(set(overrides) - set(LOAD_FIELDS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}; load settings "
            f"are {', '.join(LOAD_FIELDS)}"
        )
    changes = {key: value for key, value in overrides.items() if value is not None}
    if "dtype" in changes and isinstance(changes["dtype"], torch.dtype):
        changes["dtype"] = str(changes["dtype"]).removeprefix("torch.")
    base = options or LoadOptions()
    return replace(base, **changes) if changes else base


def local_only(options: LoadOptions) -> LoadOptions:
    """``options`` without its hub settings (for a local checkpoint such as the demo ones)."""
    return LoadOptions(
        device=options.device, dtype=options.dtype, compute_type=options.compute_type
    )


def split_hub(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hub settings among ``kwargs`` (keywords of ``resolve``) and the other keywords."""
    hub = {key: kwargs[key] for key in HUB_FIELDS if key in kwargs}
    return hub, {key: value for key, value in kwargs.items() if key not in hub}


def split_load_kwargs(
    kwargs: dict[str, Any], options: LoadOptions | None = None
) -> tuple[LoadOptions, dict[str, Any]]:
    """The load settings among ``kwargs`` (as a :class:`LoadOptions`) and the other keywords."""
    mine = {key: kwargs[key] for key in LOAD_FIELDS if key in kwargs}
    rest = {key: value for key, value in kwargs.items() if key not in mine}
    return load_options(options, **mine), rest


def pick_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device; None means CUDA when available, else CPU.

    Raises:
        ConfigError: not a device name, or a CUDA device on a torch without CUDA (or without
            that many GPUs).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"Unknown device {device!r}; expected e.g. 'cpu', 'cuda', 'cuda:1'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"Device {device!r} was asked for, but this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu, or install a CUDA build of torch."
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"Device {device!r} does not exist: {count} CUDA GPU(s) found.")
    return resolved
