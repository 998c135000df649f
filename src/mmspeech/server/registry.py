"""Which models a server may load, and the ones it has loaded.

A request names a model; the registry maps the name to a checkpoint only through the allow-list
(``ServerSettings.models``), a sub-directory of ``models_dir``, or — when ``allow_hub`` is set — a
hub id. Nothing else reaches the loaders: no paths, no ``..``. Models load on first use, each once
(concurrent first requests wait for the same load); their sizes count against a memory budget and
the least recently used ones are dropped to make room. Languages of an ASR model are adapters the
ASR model itself caches, so one base serves every language.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import re
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmspeech.errors import CheckpointNotFoundError
from mmspeech.server.errors import APIError
from mmspeech.server.settings import TASKS, ServerSettings

if TYPE_CHECKING:
    from mmspeech.checkpoints.options import LoadOptions

logger = logging.getLogger(__name__)

KINDS = tuple(TASKS)
KIND_NAMES = TASKS
# OpenAI model names that mean "this server's default model for the task"
ALIASES = {"whisper-1": "asr", "gpt-4o-transcribe": "asr", "tts-1": "tts", "tts-1-hd": "tts"}
_NAME = re.compile(r"[A-Za-z0-9][\w.+-]*")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_WEIGHTS = ("*.safetensors", "*.bin")
_now = time.monotonic  # the registry's clock (a test replaces it)

Loader = Callable[[str, "LoadOptions"], Any]  # (checkpoint reference, load settings) -> model


@dataclass(frozen=True)
class ModelEntry:
    """A servable model: the name clients use, its checkpoint and its task."""

    name: str
    ref: str
    kind: str
    # a hub id a client named (``allow_hub``): loaded from the hub only, never a local path
    hub: bool = False


def kind_of_checkpoint(directory: Path) -> str | None:
    """The task of a local checkpoint, from the architecture its config.json names."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return None
    names = " ".join([*config.get("architectures", []), str(config.get("model_type", ""))])
    if "SpeechEncoderDecoder" in names or "speech-encoder-decoder" in names:
        return "translation"
    if "Vits" in names or "vits" in names:
        return "tts"
    if "SequenceClassification" in names:
        return "lid"
    if "ForCTC" in names:
        return "asr"
    return None


def estimated_bytes(ref: str) -> int:
    """Bytes of a local checkpoint's weight files (language adapters excluded); 0 if unknown."""
    directory = Path(ref)
    if not directory.is_dir():
        return 0
    files = {path for pattern in _WEIGHTS for path in directory.glob(pattern)}
    return sum(path.stat().st_size for path in files if not path.name.startswith("adapter."))


# config.json keys for a transformer's sizes, in the spellings of the families MMS checkpoints use
_WIDTH_KEYS = ("hidden_size", "d_model", "n_embd")
_DEPTH_KEYS = ("num_hidden_layers", "encoder_layers", "decoder_layers", "n_layer", "num_layers")
_FFN_KEYS = ("intermediate_size", "encoder_ffn_dim", "decoder_ffn_dim", "ffn_dim", "n_inner")
_BYTES_PER_PARAMETER = 4  # float32, as the server loads models today


def config_bytes(config: dict[str, Any]) -> int:
    """A lower bound on the bytes a model of ``config`` (a parsed config.json) allocates.

    Counts only the transformer blocks and the embedding: ``layers × (4·width² + 2·width·ffn) +
    vocabulary × width`` parameters, summed over nested configs (an encoder-decoder's two
    halves). Absurd sizes (a corrupt or hostile config) give an absurd estimate, which the
    memory budget then refuses before anything is allocated.
    """

    def number(keys: tuple[str, ...], default: float = 0.0) -> float:
        for key in keys:
            value = config.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value) if math.isfinite(value) and value > 0 else math.inf
        return default

    width = number(_WIDTH_KEYS)
    layers = number(_DEPTH_KEYS, 1.0 if width else 0.0)
    ffn = number(_FFN_KEYS, 4 * width)
    vocabulary = number(("vocab_size",))
    parameters = layers * (4 * width**2 + 2 * width * ffn) + vocabulary * width
    nested = sum(config_bytes(value) for value in config.values() if isinstance(value, dict))
    total = parameters * _BYTES_PER_PARAMETER + nested
    return int(min(total, 2**62))  # inf (or beyond any machine) as a huge int


def _config_estimate(ref: str) -> int:
    """:func:`config_bytes` of a local checkpoint's config.json; 0 if it has none."""
    try:
        config = json.loads((Path(ref) / "config.json").read_text())
    except (OSError, ValueError):
        return 0
    return config_bytes(config) if isinstance(config, dict) else 0


def measured_bytes(model: Any) -> int:
    """Bytes of the parameters and buffers a loaded model holds (looked for one level deep)."""
    import torch

    modules = [model] if isinstance(model, torch.nn.Module) else []
    modules += [value for value in vars(model).values() if isinstance(value, torch.nn.Module)]
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def default_loaders() -> dict[str, Loader]:
    """The high-level API's loaders (imported when a model is first needed)."""

    def load(kind: str) -> Loader:
        def loader(ref: str, load: LoadOptions) -> Any:
            from mmspeech import api

            function = {
                "asr": "load_asr",
                "lid": "load_lid",
                "tts": "load_tts",
                "translation": "load_speech2text",
            }[kind]
            return getattr(api, function)(ref, options=load)

        return loader

    return {kind: load(kind) for kind in KINDS}


class ModelRegistry:
    """Resolves model names to checkpoints and keeps loaded models within a memory budget."""

    def __init__(self, settings: ServerSettings, loaders: Mapping[str, Loader] | None = None):
        self.settings = settings
        self.loaders = dict(loaders or default_loaders())
        self._loaded: OrderedDict[str, tuple[Any, int]] = OrderedDict()  # name -> (model, bytes)
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._use_locks: dict[str, threading.Lock] = {}
        self._entries: tuple[int | None, list[ModelEntry]] | None = None  # (dir mtime, entries)
        self._failures: dict[str, tuple[float, APIError]] = {}  # name -> (until, error)
        self.loads = 0
        self.evictions = 0

    # -- names ---------------------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        """Every model this server may load: the allow-list, then the models directory.

        The directory is scanned again only when its modification time changes (a checkpoint
        directory added or removed), not on every request.
        """
        models_dir = self.settings.models_dir
        try:
            stamp = models_dir.stat().st_mtime_ns if models_dir is not None else None
        except OSError:
            stamp = None
        cached = self._entries
        if cached is not None and cached[0] == stamp:
            return cached[1]
        entries = self._scan()
        self._entries = (stamp, entries)
        return entries

    def _scan(self) -> list[ModelEntry]:
        found: dict[str, ModelEntry] = {}
        for name, ref in self.settings.models.items():
            kind = kind_of_checkpoint(Path(ref)) or _kind_from_name(name, ref)
            if kind:
                found[name] = ModelEntry(name, ref, kind)
        models_dir = self.settings.models_dir
        if models_dir is not None and models_dir.is_dir():
            for directory in sorted(models_dir.iterdir()):
                kind = kind_of_checkpoint(directory) if directory.is_dir() else None
                if kind and directory.name not in found:
                    found[directory.name] = ModelEntry(directory.name, str(directory), kind)
        return list(found.values())

    def default(self, kind: str) -> str | None:
        """The name of the default model for a task: as configured, else the only one there is."""
        configured = self.settings.default_for(kind)
        if configured:
            return configured
        candidates = [entry.name for entry in self.entries() if entry.kind == kind]
        return candidates[0] if len(candidates) == 1 else None

    def find(self, name: str) -> ModelEntry | None:
        """The entry named ``name`` (allow-list or models directory), or None."""
        if not _NAME.fullmatch(name) and name not in self.settings.models:
            return None
        return next((entry for entry in self.entries() if entry.name == name), None)

    def resolve(self, name: str | None, kind: str) -> ModelEntry:
        """The entry for a client's ``model`` value, for a task.

        Raises:
            APIError: 400 for a reference that is not a plain name (paths, ``..``), 404 for a
                name that is not served, 400 when the model does not do ``kind``.
        """
        task = KIND_NAMES[kind]
        if name is None or name == "" or name in ALIASES:
            default = self.default(kind)
            if default is None:
                names = self._names(kind)
                raise APIError(
                    404,
                    f"This server has no default {task} model; pass model= one of: {names}."
                    if names
                    else f"This server serves no {task} model.",
                    "model_not_found",
                    "model",
                )
            name = default
        invalid = APIError(
            400,
            f"Invalid model reference {name!r}: models are chosen by name (see GET /v1/models)"
            + (" or as a hub id owner/name" if self.settings.allow_hub else "")
            + ", not by path.",
            "invalid_model_reference",
            "model",
        )
        if ".." in name or name.startswith(("/", "~", ".")) or "\\" in name or "\0" in name:
            raise invalid
        entry = self.find(name)
        if entry is None and "/" in name:
            if not _HUB_ID.fullmatch(name):
                raise invalid  # a/b/c is a path, never a hub id
            if self.settings.allow_hub:
                entry = ModelEntry(name, name, _kind_from_name(name, name) or kind, hub=True)
        if entry is None:
            raise APIError(
                404,
                f"The model {name!r} does not exist on this server; {task} models: "
                f"{self._names(kind) or 'none'}"
                + (
                    ""
                    if self.settings.allow_hub or "/" not in name
                    else " (hub ids are served only when the server runs with --allow-hub)"
                )
                + ".",
                "model_not_found",
                "model",
            )
        if entry.kind != kind:
            raise APIError(
                400,
                f"The model {name!r} is a {KIND_NAMES[entry.kind]} model; this endpoint needs a "
                f"{task} model: {self._names(kind) or 'this server has none'}.",
                "wrong_model_type",
                "model",
            )
        return entry

    def can_load(self, entry: ModelEntry) -> bool:
        """Whether ``entry`` can load now: a local checkpoint, a loaded model, or a hub id that
        is cached, downloadable (online), or the default that falls back to a bundled demo
        checkpoint offline. Offline, a hub id in none of these cases would only fail."""
        if entry.name in self._loaded or (Path(entry.ref) / "config.json").is_file():
            return True
        if not _HUB_ID.fullmatch(entry.ref) or not _offline():
            return True
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(entry.ref, "config.json"), str):
            return True
        return demo_fallback(entry.ref) is not None

    def runs_demo(self, entry: ModelEntry) -> bool:
        """Whether ``entry`` is (or would load as) one of mmspeech's bundled demo checkpoints —
        toy models trained on synthetic speech, which a page or client should say it runs."""
        from mmspeech.demo import DEMO_DIR

        loaded = self._loaded.get(entry.name)
        ref = str(getattr(loaded[0], "ref", "")) if loaded is not None else entry.ref
        if Path(ref).expanduser().resolve().is_relative_to(DEMO_DIR):
            return True
        if loaded is not None or not _HUB_ID.fullmatch(entry.ref) or not _offline():
            return False
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(entry.ref, "config.json"), str)
        return not cached and demo_fallback(entry.ref) is not None

    def _names(self, kind: str) -> str:
        return ", ".join(entry.name for entry in self.entries() if entry.kind == kind)

    # -- loading -------------------------------------------------------------------------------

    def get(self, entry: ModelEntry) -> Any:
        """The loaded model of ``entry``, loading it (and evicting others) if needed.

        A checkpoint whose config.json declares more than the memory budget is refused before
        anything is allocated. A failed load leaves nothing behind (the exception and its frames
        are dropped, then garbage collected) and is remembered for ``load_failure_ttl`` seconds:
        requests meanwhile get the same error without another attempt.

        Blocking: call it from a worker thread, never on the event loop.

        Raises:
            APIError: 404 for a hub model that cannot be had, 500 for a model too large for the
                budget or one that failed to load (now or within the TTL).
        """
        with self._lock:
            if entry.name in self._loaded:
                self._loaded.move_to_end(entry.name)
                return self._loaded[entry.name][0]
            self._raise_recent_failure(entry.name)
            load_lock = self._load_locks.setdefault(entry.name, threading.Lock())
        with load_lock:
            with self._lock:
                if entry.name in self._loaded:  # loaded by a concurrent request meanwhile
                    self._loaded.move_to_end(entry.name)
                    return self._loaded[entry.name][0]
                self._raise_recent_failure(entry.name)
            failure = self._check_size(entry)
            model = None
            if failure is None:
                with self._lock:
                    self._make_room(self._expected_bytes(entry))
                model, failure = self._load(entry)
            if failure is not None:
                with self._lock:
                    self._failures[entry.name] = (_now() + self.settings.load_failure_ttl, failure)
                gc.collect()  # the failed attempt's tensors, now unreferenced
                raise self._copy(failure)
            size = measured_bytes(model) or self._expected_bytes(entry)
            with self._lock:
                self._make_room(size)
                self._loaded[entry.name] = (model, size)
                self.loads += 1
            return model

    @staticmethod
    def _expected_bytes(entry: ModelEntry) -> int:
        """What a local checkpoint will take: its weight files, or its config if that says more
        (0 for a hub id: nothing on disk to read, and never a local path of the same name)."""
        if entry.hub:
            return 0
        return max(estimated_bytes(entry.ref), _config_estimate(entry.ref))

    def _check_size(self, entry: ModelEntry) -> APIError | None:
        needed = 0 if entry.hub else _config_estimate(entry.ref)
        budget = self.settings.memory_budget_bytes
        if needed <= budget:
            return None
        logger.error(
            "model %s: its config.json describes about %.3g GB, over the %.3g GB memory budget",
            entry.name, needed / 1e9, budget / 1e9,
        )  # fmt: skip
        return APIError(
            500,
            f"The model {entry.name!r} needs more memory ({needed / 1e9:.3g} GB or more, from "
            f"its configuration) than this server's {budget / 1e9:.3g} GB budget allows.",
            "model_too_large",
            "model",
        )

    def _load(self, entry: ModelEntry) -> tuple[Any, APIError | None]:
        """``(model, None)``, or ``(None, the error to answer)``; never keeps the exception."""
        if entry.hub and Path(entry.ref).expanduser().exists():
            # a local path spelled like a hub id: answer as for a hub miss, revealing nothing
            return None, self._hub_miss(entry)
        logger.info("loading %s model %s from %s", entry.kind, entry.name, entry.ref)
        try:
            return self.loaders[entry.kind](entry.ref, self.settings.load_options(entry.name)), None
        except CheckpointNotFoundError as error:
            logger.error("model %s cannot be found: %s", entry.name, error)
            if entry.hub:
                return None, self._hub_miss(entry)
            message = (
                f"The model {entry.name!r} cannot be loaded now: its files are not available "
                "to this server (offline, or not downloaded)."
            )
            return None, APIError(503, message, "model_unavailable", "model")
        except Exception:
            # the traceback as text: a log record holding the exception would keep its frames,
            # and so the half-loaded weights, alive in any handler that keeps records
            logger.error("model %s failed to load:\n%s", entry.name, traceback.format_exc())
            message = f"The model {entry.name!r} failed to load; the server log has the details."
            return None, APIError(500, message, "model_error", "model")

    @staticmethod
    def _hub_miss(entry: ModelEntry) -> APIError:
        return APIError(
            404,
            f"The model {entry.name!r} cannot be loaded from the Hugging Face hub: it does not "
            "exist there, is gated, or the hub cannot be reached.",
            "model_not_found",
            "model",
        )

    def _raise_recent_failure(self, name: str) -> None:
        """Raise the error of a load of ``name`` that failed less than the TTL ago (under lock)."""
        failed = self._failures.get(name)
        if failed is None:
            return
        if _now() < failed[0]:
            raise self._copy(failed[1])
        del self._failures[name]

    @staticmethod
    def _copy(error: APIError) -> APIError:
        """A fresh exception each time: a raised one collects a traceback, which must not stay
        attached to the cached failure."""
        return APIError(error.status, error.message, error.code, error.param, error.headers)

    def lock(self, name: str) -> threading.Lock:
        """The lock that serialises inference on one model (an ASR model switches adapters)."""
        with self._lock:
            return self._use_locks.setdefault(name, threading.Lock())

    def _make_room(self, needed: int) -> None:
        """Drop least recently used models until ``needed`` more bytes fit the budget."""
        budget = self.settings.memory_budget_bytes
        while self._loaded and self.loaded_bytes() + needed > budget:
            name, (_, size) = self._loaded.popitem(last=False)
            self.evictions += 1
            logger.info(
                "evicted model %s (%d MB) to stay within the memory budget", name, size >> 20
            )

    def loaded_bytes(self) -> int:
        return sum(size for _, size in self._loaded.values())

    def loaded_names(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        with self._lock:
            return list(self._loaded)


def _offline() -> bool:
    """Whether the hub is off limits (``HF_HUB_OFFLINE``, read now, as the loaders read it)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    from huggingface_hub import constants

    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def demo_fallback(ref: str) -> Path | None:
    """The bundled demo checkpoint the loaders use instead of ``ref`` when it cannot be had
    (only the high-level API's default ASR and LID hub ids fall back); None for any other."""
    from mmspeech.api.options import DEFAULT_ASR_MODEL, DEFAULT_LID_MODEL
    from mmspeech.demo import demo_checkpoint

    kind = {DEFAULT_ASR_MODEL: "asr", DEFAULT_LID_MODEL: "lid"}.get(ref)
    if kind is None:
        return None
    try:
        return demo_checkpoint(kind)
    except CheckpointNotFoundError:
        return None


def _kind_from_name(name: str, ref: str) -> str | None:
    """A task guessed from MMS naming (for hub ids, whose config is not on disk)."""
    text = f"{name} {ref}".lower()
    if "mms-tts" in text or "tts" in name.lower():
        return "tts"
    if "mms-lid" in text:
        return "lid"
    if "mms-1b" in text or "mms-300m" in text or "wav2vec2" in text:
        return "asr"
    return None
