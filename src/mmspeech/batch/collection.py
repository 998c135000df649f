"""What a batch job works on: the items of a folder, a glob, a manifest (CSV, TSV, JSONL) or a
Hugging Face ``datasets`` dataset with an audio column (optional dependency).

Every item has an id that names it in the results (the manifest's ``id``, else its path relative to
the folder, or as the manifest or glob wrote it) and a fingerprint (size and modification time)
that tells whether a result already written is still the result of this file.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmspeech.audio import AUDIO_SUFFIXES
from mmspeech.errors import ConfigError, MissingDependencyError
from mmspeech.files import atomic_path

MANIFEST_SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".ndjson": None}
COLUMNS = ("path", "id", "language", "text")  # what a manifest row may hold ("path" required)


@dataclass(frozen=True)
class Item:
    """One audio input of a collection."""

    id: str  # unique in the collection; the key of its result
    path: str  # where the audio is (absolute)
    language: str | None = None  # given by the manifest; None: detected
    text: str | None = None  # a reference transcript from the manifest (carried to the results)
    size: int | None = None  # bytes; None when the file is missing
    mtime_ns: int | None = None  # modification time in ns; None when the file is missing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Item:
        return cls(**{name: row.get(name) for name in cls.__dataclass_fields__})  # type: ignore[arg-type]


def read_collection(
    inputs: Any,
    audio_dir: str | os.PathLike[str] | None = None,
    audio_column: str = "audio",
) -> list[Item]:
    """The items of ``inputs``: folders (recursive, audio extensions), globs, manifests, files,
    ``datasets.Dataset`` objects or folders written by ``Dataset.save_to_disk``.

    Args:
        inputs: one input or a list of them.
        audio_dir: where the audio bytes held in a dataset are written as files (a dataset whose
            audio column holds paths needs none).
        audio_column: a dataset's audio column.

    Raises:
        ConfigError: an input that names nothing, a malformed manifest, or two items with one id.
    """
    if isinstance(inputs, (str, os.PathLike)) or _is_dataset(inputs):
        inputs = [inputs]
    items: list[Item] = []
    for given in inputs:
        if _is_dataset(given):
            items.extend(read_dataset(given, audio_dir, audio_column))
            continue
        text = os.fspath(given)
        path = Path(text).expanduser()
        if (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
            items.extend(read_dataset(_load_from_disk(path), audio_dir, audio_column))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if _is_audio(p))
            if not found:
                raise ConfigError(f"{text} is a folder with no audio files ({_suffixes()}).")
            items.extend(_item(p.relative_to(path).as_posix(), p) for p in found)
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            items.extend(read_manifest(path))
        elif path.is_file():
            items.append(_item(text, path))
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
            files = [p for p in matches if _is_audio(p)]
            if not files:
                raise ConfigError(f"The pattern {text!r} matches no audio files ({_suffixes()}).")
            items.extend(_item(str(p), p) for p in files)
        else:
            raise ConfigError(
                f"{text} is neither a folder, an audio file, a manifest "
                f"({', '.join(MANIFEST_SUFFIXES)}) nor a glob pattern that matches files."
            )
    _check_unique(items)
    return items


def read_manifest(path: Path) -> list[Item]:
    """A CSV/TSV (header row) or JSONL manifest: ``path`` and optional ``id``, ``language``,
    ``text``. Relative paths are relative to the manifest's folder; a missing audio file is kept
    (its item fails in the job, named in the errors manifest)."""
    delimiter = MANIFEST_SUFFIXES[path.suffix.lower()]
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            if delimiter is None:
                rows = [
                    _json_row(line, path, n) for n, line in enumerate(handle, 1) if line.strip()
                ]
            else:
                rows = list(csv.DictReader(handle, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"Cannot read the manifest {path}: {exc}") from exc
    items = []
    for number, row in enumerate(rows, start=1):
        audio = row.get("path")
        if not audio or not isinstance(audio, str):
            raise ConfigError(
                f"{path}, row {number}: no 'path' (the manifest needs a 'path' column; "
                f"optional: id, language, text); found the columns {sorted(row)}."
            )
        file = Path(audio).expanduser()
        file = file if file.is_absolute() else path.parent / file
        items.append(
            _item(
                str(row.get("id") or audio),
                file,
                _optional(row, "language"),
                _optional(row, "text"),
            )
        )
    if not items:
        raise ConfigError(f"The manifest {path} has no rows.")
    return items


def read_dataset(
    dataset: Any, audio_dir: str | os.PathLike[str] | None, audio_column: str = "audio"
) -> list[Item]:
    """The rows of a ``datasets.Dataset`` as items: ``audio_column`` (paths, or bytes written to
    ``audio_dir/<id><suffix>`` once) and the optional columns ``id`` (else the row number),
    ``language`` and ``text``."""
    from datasets import Audio

    if audio_column not in dataset.column_names:
        raise ConfigError(
            f"The dataset has no audio column {audio_column!r}; its columns are "
            f"{dataset.column_names} (choose one with audio_column / --audio-column)."
        )
    rows = dataset.cast_column(audio_column, Audio(decode=False))  # bytes or a path, no decoding
    items = []
    for number, row in enumerate(rows):
        audio = row[audio_column] or {}
        item_id = str(row["id"]) if row.get("id") not in (None, "") else str(number)
        data, given = audio.get("bytes"), audio.get("path")
        if data:
            if audio_dir is None:
                raise ConfigError("A dataset that holds audio bytes needs audio_dir for them.")
            suffix = Path(given or "").suffix or ".wav"
            path = Path(audio_dir) / f"{_file_name(item_id)}{suffix}"
            if not path.is_file() or path.stat().st_size != len(data):  # once: mtime stays
                with atomic_path(path) as temporary:
                    temporary.write_bytes(data)
        else:
            path = Path(given or f"<row {number} has no audio>")
        items.append(_item(item_id, path, _optional(row, "language"), _optional(row, "text")))
    return items


def _is_dataset(value: Any) -> bool:
    return hasattr(value, "column_names") and hasattr(value, "cast_column")


def _load_from_disk(path: Path) -> Any:
    try:
        from datasets import Dataset, load_from_disk
    except ImportError as exc:
        raise MissingDependencyError(
            f"{path} is a Hugging Face dataset; reading it needs: pip install datasets"
        ) from exc
    dataset = load_from_disk(str(path))
    if not isinstance(dataset, Dataset):
        raise ConfigError(
            f"{path} holds several splits ({', '.join(dataset)}); pass one split's folder."
        )
    return dataset


def _file_name(item_id: str) -> str:
    """An id as one file name (no folders, no leading dots; a hash keeps changed ids apart)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in item_id).lstrip(".")
    if name == item_id:
        return name
    return f"{name}-{hashlib.sha1(item_id.encode()).hexdigest()[:8]}"


def _json_row(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}, line {number}: not JSON ({exc.msg}).") from exc
    if not isinstance(row, dict):
        raise ConfigError(f"{path}, line {number}: expected a JSON object, found {row!r:.40}.")
    return row


def _optional(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    return str(value) if value not in (None, "") else None


def _item(item_id: str, path: Path, language: str | None = None, text: str | None = None) -> Item:
    path = path.absolute()
    try:
        stat = path.stat()
    except OSError:
        return Item(item_id, str(path), language, text)
    return Item(item_id, str(path), language, text, stat.st_size, stat.st_mtime_ns)


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES and path.is_file()


def _suffixes() -> str:
    return ", ".join(sorted(AUDIO_SUFFIXES))


def _check_unique(items: Iterable[Item]) -> None:
    seen: set[str] = set()
    twice = []
    for item in items:
        if item.id in seen:
            twice.append(item.id)
        seen.add(item.id)
    if twice:
        raise ConfigError(
            f"{len(twice)} item id(s) occur more than once (e.g. {twice[0]!r}); ids name the "
            "results, so each must be unique: give the manifest an 'id' column, or pass inputs "
            "that do not overlap."
        )
    if not seen:
        raise ConfigError("The collection is empty: no inputs were given.")
