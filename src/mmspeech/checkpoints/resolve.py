"""Turn a model reference (a local directory or a hub id) into files on disk.

Hub ids go through huggingface_hub's cache, so files fetched by other tools are reused and
``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are honoured. Files are fetched one at a
time, on demand: loading mms-1b-all with one language fetches that language's adapter only.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmspeech.errors import CheckpointError, CheckpointNotFoundError

logger = logging.getLogger(__name__)

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
PYTORCH_BIN_INDEX = "pytorch_model.bin.index.json"
_HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*")


def _env_offline() -> bool:
    # Read at call time (huggingface_hub reads it once, at import).
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class ModelFiles:
    """A resolved checkpoint: where its files are, or how to fetch them.

    Attributes:
        ref: what the caller passed (directory path or hub id).
        directory: the local directory, for a local checkpoint; None for a hub id.
        revision, cache_dir, token, local_files_only: hub settings, used for hub ids only.
    """

    ref: str
    directory: Path | None = None
    revision: str | None = None
    cache_dir: str | os.PathLike[str] | None = None
    token: str | bool | None = None
    local_files_only: bool = False
    _not_cached: list[str] = field(default_factory=list, repr=False)

    @property
    def is_local(self) -> bool:
        return self.directory is not None

    def path(self, filename: str) -> Path | None:
        """The local path of ``filename``, fetching it from the hub if needed; None if absent.

        Raises:
            CheckpointNotFoundError: the repository itself cannot be reached or does not exist.
        """
        if self.directory is not None:
            candidate = self.directory / filename
            return candidate if candidate.is_file() else None
        return self._hub_path(filename)

    def require(self, filename: str, what: str = "") -> Path:
        """Like :meth:`path`, but a missing file is an error that says how to fix it."""
        found = self.path(filename)
        if found is None:
            raise CheckpointNotFoundError(self._missing_message([filename], what))
        return found

    def read_json(self, filename: str) -> dict[str, Any] | None:
        """Parse a JSON file of the checkpoint; None if the file is absent."""
        found = self.path(filename)
        if found is None:
            return None
        try:
            with open(found, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{found} is not valid JSON ({exc}).") from exc
        if not isinstance(data, dict):
            raise CheckpointError(
                f"{found} should hold a JSON object, found {type(data).__name__}."
            )
        return data

    def weight_files(self) -> list[Path]:
        """The weight files, in order of preference: safetensors, sharded safetensors, .bin.

        Raises:
            CheckpointNotFoundError: none of the weight layouts is present.
        """
        single = self.path(SAFETENSORS)
        if single is not None:
            return [single]
        for index_name in (SAFETENSORS_INDEX, PYTORCH_BIN_INDEX):
            index = self.read_json(index_name)
            if index is not None:
                shards = sorted(set(index.get("weight_map", {}).values()))
                if not shards:
                    raise CheckpointError(f"{index_name} of {self.ref} lists no shards.")
                return [
                    self.require(name, "a weight shard listed in " + index_name) for name in shards
                ]
        legacy = self.path(PYTORCH_BIN)
        if legacy is not None:
            return [legacy]
        raise CheckpointNotFoundError(
            self._missing_message(
                [SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN], "model weights (any one of these)"
            )
        )

    # -- hub -------------------------------------------------------------------------------

    def _hub_path(self, filename: str) -> Path | None:
        from huggingface_hub import errors as hub_errors
        from huggingface_hub import hf_hub_download

        offline = self.local_files_only or _env_offline()
        try:
            return Path(
                hf_hub_download(
                    self.ref,
                    filename,
                    revision=self.revision,
                    cache_dir=None if self.cache_dir is None else Path(self.cache_dir),
                    token=self.token,
                    local_files_only=offline,
                )
            )
        except hub_errors.EntryNotFoundError as exc:
            if isinstance(exc, hub_errors.LocalEntryNotFoundError):
                # Offline or unreachable, and not in the cache: we cannot tell whether the
                # repository has this file. Remember it for the error message.
                self._not_cached.append(filename)
            return None
        except hub_errors.RepositoryNotFoundError as exc:
            raise CheckpointNotFoundError(
                f"'{self.ref}' is neither a local directory nor a model repository on the hub "
                "(or it is private: log in with `hf auth login`)."
            ) from exc
        except hub_errors.RevisionNotFoundError as exc:
            raise CheckpointNotFoundError(
                f"Revision '{self.revision}' does not exist in '{self.ref}'."
            ) from exc
        except hub_errors.GatedRepoError as exc:
            raise CheckpointNotFoundError(
                f"'{self.ref}' is gated: accept its terms on the hub and log in (`hf auth login`)."
            ) from exc
        except hub_errors.HfHubHTTPError as exc:
            raise CheckpointNotFoundError(
                f"Could not fetch {filename} of '{self.ref}' from the hub: {exc}"
            ) from exc

    def _missing_message(self, filenames: list[str], what: str) -> str:
        wanted = ", ".join(filenames)
        label = f" ({what})" if what else ""
        if self.directory is not None:
            return (
                f"{self.directory} has no {wanted}{label}. Is it a complete checkpoint directory?"
            )
        if any(name in self._not_cached for name in filenames):
            mode = (
                "offline mode is on (HF_HUB_OFFLINE or local_files_only)"
                if self.local_files_only or _env_offline()
                else "the hub could not be reached"
            )
            return (
                f"'{self.ref}' needs {wanted}{label}, which is not in the local cache, and {mode}. "
                "Either pass the path of a local checkpoint directory, or go online once "
                "(unset HF_HUB_OFFLINE) so the files can be downloaded into the cache."
            )
        return f"The hub repository '{self.ref}' has no {wanted}{label}."


def resolve(
    ref: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> ModelFiles:
    """Resolve a model reference: an existing directory, or else a hub id ``owner/name``.

    Raises:
        CheckpointNotFoundError: ``ref`` is neither an existing directory nor shaped like a hub id.
    """
    if isinstance(ref, ModelFiles):
        return ref
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelFiles(ref=text, directory=path)
    if path.exists():
        raise CheckpointNotFoundError(
            f"{text} is a file; a checkpoint is a directory holding config.json and the weights."
        )
    if not _HUB_ID.fullmatch(text):
        raise CheckpointNotFoundError(
            f"No checkpoint directory at {text}, and it is not a hub id of the form 'owner/name'."
        )
    return ModelFiles(
        ref=text,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
    )
