"""Turn a model reference (a local directory or a hub id) into files on disk.

Hub ids go through huggingface_hub's cache, so files fetched by other tools are reused and
``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are honoured. Files are fetched one at a
time, on demand: loading mms-1b-all with one language fetches that language's adapter only.
Offline (``HF_HUB_OFFLINE`` or ``local_files_only``), files are looked up in the cache alone,
with no network request at all.

When the hub cannot be reached, huggingface_hub (2.x) retries the look-up of every file that
is not cached: 5 more attempts, 1+2+4+8+8 = 23 s of sleep, up to 60 s of timeout each. So before
its first download a :class:`ModelFiles` checks once, with one request and no retries, that the
hub answers; if it does not, that checkpoint is served from the cache only and a missing file
is reported at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mmspeech.errors import CheckpointError, CheckpointNotFoundError

logger = logging.getLogger(__name__)

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
PYTORCH_BIN_INDEX = "pytorch_model.bin.index.json"
_HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*")
# short names of the checkpoints bundled with the package (mmspeech.demo) -> their kind
DEMO_NAMES = {"demo": "asr", "demo-asr": "asr", "demo-lid": "lid"}
_DEFAULT_PROBE_TIMEOUT = 10.0  # seconds, if huggingface_hub has no HF_HUB_ETAG_TIMEOUT (old ones)


def _env_offline() -> bool:
    """Whether offline mode is on: ``HF_HUB_OFFLINE`` now, or as huggingface_hub saw it.

    huggingface_hub reads the variable once, at import; reading it again here lets a program
    (or a test) switch offline mode on after that import.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    from huggingface_hub import constants

    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _hub_cache(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The directory huggingface_hub uses as its cache for ``cache_dir`` (None: the default)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


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
    # hub files that were wanted but are not in the cache, while offline or unreachable
    _not_cached: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    # None: the hub has not been contacted yet; "": it answered; else why it could not be reached
    _hub_status: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def not_cached(self) -> tuple[str, ...]:
        """Hub files looked for while offline (or the hub was unreachable) and not in the cache."""
        return tuple(self._not_cached)

    @property
    def is_local(self) -> bool:
        return self.directory is not None

    def path(self, filename: str) -> Path | None:
        """The local path of ``filename``, fetching it from the hub if needed; None if absent.

        A hub file that is absent *from the cache* while offline (or while the hub is
        unreachable) also gives None; :meth:`missing_message` then says so.

        Raises:
            CheckpointNotFoundError: the repository or revision does not exist, or is gated.
        """
        if self.directory is not None:
            candidate = self.directory / filename
            return candidate if candidate.is_file() else None
        return self._hub_path(filename)

    def require(self, filename: str, what: str = "") -> Path:
        """Like :meth:`path`, but a missing file is an error that says how to fix it."""
        found = self.path(filename)
        if found is None:
            raise CheckpointNotFoundError(self.missing_message([filename], what))
        return found

    def read_json(self, filename: str) -> dict[str, Any] | None:
        """Parse a JSON file of the checkpoint; None if the file is absent."""
        found = self.path(filename)
        if found is None:
            return None
        try:
            with open(found, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise CheckpointError(f"{found} is not valid JSON ({reason}).") from exc
        if not isinstance(data, dict):
            raise CheckpointError(
                f"{found} should hold a JSON object, found {type(data).__name__}."
            )
        return data

    def weight_files(self) -> list[Path]:
        """The weight files, in order of preference: safetensors, sharded safetensors, .bin.

        Offline, a layout that is not cached is skipped, so a cached ``pytorch_model.bin`` is
        found even when ``model.safetensors`` was never downloaded.

        Raises:
            CheckpointNotFoundError: none of the weight layouts is present (or cached).
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
            self.missing_message(
                [SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN_INDEX, PYTORCH_BIN],
                "the model weights, any one of these",
            )
        )

    def missing_message(self, filenames: list[str], what: str = "") -> str:
        """Why ``filenames`` (which :meth:`path` did not find) are missing, and what to do."""
        label = f" ({what})" if what else ""
        if self.directory is not None:
            wanted = ", ".join(filenames)
            return (
                f"{self.directory} has no {wanted}{label}. Is it a complete checkpoint directory?"
            )
        at = f" at revision '{self.revision}'" if self.revision else ""
        not_cached = [name for name in filenames if name in self._not_cached]
        if not not_cached:
            return f"The hub repository '{self.ref}'{at} has no {', '.join(filenames)}{label}."
        wanted = ", ".join(not_cached)
        lead = (
            f"'{self.ref}' is not a local directory, so it was looked up as a hub id: it needs "
            f"{wanted}{label}{at}, which {'is' if len(not_cached) == 1 else 'are'} not in the "
            f"local cache ({_hub_cache(self.cache_dir)})"
        )
        if self._hub_status:
            return (
                f"{lead}, and the hub could not be reached ({self._hub_status}). Either pass the "
                "path of a local checkpoint directory, or check the network connection (and "
                "HF_ENDPOINT, proxy settings) and try again so the files can be downloaded."
            )
        if self.local_files_only or _env_offline():
            return (
                f"{lead}, and offline mode is on (HF_HUB_OFFLINE or local_files_only=True). "
                "Either pass the path of a local checkpoint directory, or go online once (unset "
                "HF_HUB_OFFLINE, drop local_files_only) so the files are downloaded into the cache."
            )
        return (
            f"{lead}, and the hub did not serve it. Either pass the path of a local checkpoint "
            "directory, or try again later."
        )

    # -- hub -------------------------------------------------------------------------------

    def _offline(self) -> bool:
        return self.local_files_only or bool(self._hub_status) or _env_offline()

    def _check_hub(self, filename: str) -> None:
        """Once per checkpoint: does the hub answer at all? One HEAD request, no retries.

        No HTTP answer (connection refused, DNS failure, timeout, proxy or TLS error) or a
        server error (5xx) marks the hub unreachable: this checkpoint is then served from the
        cache alone.
        """
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
        from huggingface_hub.utils import HfHubHTTPError

        timeout = getattr(constants, "HF_HUB_ETAG_TIMEOUT", None) or _DEFAULT_PROBE_TIMEOUT
        url = hf_hub_url(self.ref, filename, revision=self.revision)
        reason = ""
        try:
            get_hf_file_metadata(url, token=self.token, timeout=timeout)
        except HfHubHTTPError as exc:
            # The hub answered. "Not found", "gated" etc. are hf_hub_download's to report; a
            # server error means it is down, and hf_hub_download would retry for 23 s per file.
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if isinstance(status, int) and status >= 500:
                reason = f"HTTP {status}"
        except Exception as exc:  # httpx/requests/OS errors differ by huggingface_hub version
            reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        if reason:
            reason += ", at {0.scheme}://{0.netloc}".format(urlsplit(url))
            logger.warning(
                "The hub cannot be reached (%s); files of '%s' come from the local cache only.",
                reason,
                self.ref,
            )
        self._hub_status = reason

    def _cached_path(self, filename: str) -> Path | None:
        """``filename`` from the cache alone: no network, not even huggingface_hub's headers.

        (``hf_hub_download(local_files_only=True)`` is not enough: in huggingface_hub 2.x it
        still fetches ``/api/agent-harnesses`` once per process unless HF_HUB_OFFLINE is set.)
        """
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(
            self.ref,
            filename,
            cache_dir=None if self.cache_dir is None else str(Path(self.cache_dir).expanduser()),
            revision=self.revision,
        )
        if isinstance(found, str):
            return Path(found)
        if found is None:
            # Not cached: we cannot tell whether the repository has this file. (Otherwise it is
            # huggingface_hub's "no such file" marker, from an earlier online look-up.)
            self._not_cached.append(filename)
        return None

    def _hub_path(self, filename: str) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if self._hub_status is None and not self._offline():
            self._check_hub(filename)
        if self._offline():
            return self._cached_path(filename)
        try:
            return Path(
                hf_hub_download(
                    self.ref,
                    filename,
                    revision=self.revision,
                    cache_dir=None if self.cache_dir is None else Path(self.cache_dir),
                    token=self.token,
                )
            )
        except LocalEntryNotFoundError:
            # The hub failed to answer for this file (after answering the check), and it is not
            # cached. Remember it for the error message. (A subclass of EntryNotFoundError.)
            self._not_cached.append(filename)
            return None
        except EntryNotFoundError:
            return None  # the hub says the repository has no such file
        except GatedRepoError as exc:  # a subclass of RepositoryNotFoundError: first
            raise CheckpointNotFoundError(
                f"'{self.ref}' is gated: accept its terms on the hub and log in (`hf auth login`)."
            ) from exc
        except RepositoryNotFoundError as exc:
            raise CheckpointNotFoundError(
                f"'{self.ref}' is neither a local directory nor a model repository on the hub "
                "(or it is private: log in with `hf auth login`)."
            ) from exc
        except RevisionNotFoundError as exc:
            raise CheckpointNotFoundError(
                f"Revision '{self.revision}' does not exist in '{self.ref}'."
            ) from exc
        except HfHubHTTPError as exc:
            raise CheckpointNotFoundError(
                f"Could not fetch {filename} of '{self.ref}' from the hub: {exc}"
            ) from exc


def resolve(
    ref: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> ModelFiles:
    """Resolve a model reference: an existing directory, a bundled checkpoint's short name
    (``demo``, ``demo-lid``), or else a hub id ``owner/name``.

    Nothing is downloaded here: files are fetched when :class:`ModelFiles` is asked for them.

    Raises:
        CheckpointNotFoundError: ``ref`` is a file, or neither an existing directory nor a
            valid hub id.
    """
    if isinstance(ref, ModelFiles):
        return ref
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelFiles(ref=text, directory=path)
    if text in DEMO_NAMES:  # the bundled checkpoints' short names (no such local directory)
        from mmspeech.demo import demo_checkpoint

        return ModelFiles(ref=text, directory=demo_checkpoint(DEMO_NAMES[text]))
    if path.exists():
        raise CheckpointNotFoundError(
            f"{text} is a file; a checkpoint is a directory holding config.json and the weights "
            "(pass the directory that contains it)."
        )
    if not _HUB_ID.fullmatch(text) or not _valid_repo_id(text):
        raise CheckpointNotFoundError(
            f"No checkpoint directory at {text}, and it is not a hub id of the form 'owner/name' "
            "(such as facebook/mms-1b-all). Check the path."
        )
    return ModelFiles(
        ref=text,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
    )


def _valid_repo_id(text: str) -> bool:
    """huggingface_hub's own rules ('--' and '..' are forbidden, at most 96 characters, …)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True
