"""The output folder of a batch job: shards written atomically, resume, and the final manifests.

Layout of ``OUT``::

    shards/shard-<hash>.jsonl   one per unit of work: its result rows and error rows
    results.jsonl               the final results, one row per item, in collection order
    results.parquet             the same rows (when pyarrow is installed)
    errors.jsonl                id, path, stage, error class and message of each failed item
    transcripts/<id>.<fmt>      per-item transcript files (when formats are asked for)
    audio/                      the audio a Hugging Face dataset held as bytes, as files

A shard is written to a temporary file and renamed into place, so it is whole or absent; its name
is a hash of the items it holds, so a unit of work done twice (a retried task) replaces the same
file. The final manifests are written (the same way) only once every item has a row, and removed
when a run with work to do starts: they are complete or absent, never half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mmspeech.batch.collection import Item
from mmspeech.files import atomic_path, atomic_write_text
from mmspeech.results import Segment, Transcription, Word
from mmspeech.writers import write_transcription

logger = logging.getLogger(__name__)

RESULTS, PARQUET, ERRORS = "results.jsonl", "results.parquet", "errors.jsonl"
SHARDS, TRANSCRIPTS, AUDIO = "shards", "transcripts", "audio"


class ResultStore:
    """Reads and writes one job's output folder (see the module docstring for its layout)."""

    def __init__(self, root: str | os.PathLike[str], *, force: bool = False):
        self.root = Path(root)
        self.shards = self.root / SHARDS
        if force:
            for name in (RESULTS, PARQUET, ERRORS):
                (self.root / name).unlink(missing_ok=True)
            shutil.rmtree(self.shards, ignore_errors=True)
            shutil.rmtree(self.root / TRANSCRIPTS, ignore_errors=True)
        self.shards.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list[dict[str, Any]]] = {}  # id -> its rows, oldest shard first
        for shard in sorted(self.shards.glob("shard-*.jsonl"), key=lambda p: p.stat().st_mtime_ns):
            for row in _read_jsonl(shard):
                self._rows.setdefault(row["id"], []).append(row)

    def result(self, item: Item) -> dict[str, Any] | None:
        """The latest result row of ``item`` whose file is unchanged (same size and mtime)."""
        for row in reversed(self._rows.get(item.id, [])):
            if "error" not in row and _same_file(row, item):
                return row
        return None

    def pending(self, items: Sequence[Item]) -> list[Item]:
        """The items with no result yet (failed ones are tried again)."""
        return [item for item in items if self.result(item) is None]

    def start(self) -> None:
        """Remove the final manifests before work that will change them."""
        for name in (RESULTS, PARQUET, ERRORS):
            (self.root / name).unlink(missing_ok=True)

    def write_shard(self, rows: list[dict[str, Any]]) -> Path:
        """Write the rows of one unit of work atomically; returns the shard's path."""
        key = "\n".join(f"{r['id']}\0{r.get('size')}\0{r.get('mtime_ns')}" for r in rows)
        path = self.shards / f"shard-{hashlib.sha1(key.encode()).hexdigest()[:20]}.jsonl"
        atomic_write_text(path, "".join(_json_line(row) for row in rows))
        for row in rows:
            self._rows.setdefault(row["id"], []).append(row)
        return path

    def write_transcripts(self, rows: Iterable[dict[str, Any]], formats: Sequence[str]) -> None:
        """Per-item transcript files ``transcripts/<id>.<fmt>`` of result rows."""
        for row in rows:
            if "error" in row:
                continue
            transcription = row_to_transcription(row)
            for fmt in formats:
                target = self.root / TRANSCRIPTS / f"{safe_relative(row['id'])}.{fmt}"
                write_transcription(transcription, target, fmt)

    def finish(self, items: Sequence[Item], parquet: bool = True) -> tuple[int, int] | None:
        """Write the final manifests when every item has a row.

        Returns:
            (results, errors) counts, or None (nothing written) when some item has no row.
        """
        results, errors = [], []
        for item in items:
            row = self.result(item)
            if row is not None:
                results.append(row)
                continue
            failed = [
                r for r in self._rows.get(item.id, []) if "error" in r and _same_file(r, item)
            ]
            if not failed:
                logger.warning(
                    "item %s has no result yet: the final manifest is not written", item.id
                )
                return None
            errors.append(failed[-1])
        atomic_write_text(self.root / ERRORS, "".join(_json_line(row) for row in errors))
        if parquet:
            write_parquet(results, self.root / PARQUET)
        atomic_write_text(self.root / RESULTS, "".join(_json_line(row) for row in results))
        return len(results), len(errors)


def write_parquet(rows: list[dict[str, Any]], path: Path) -> bool:
    """``rows`` as a Parquet file (atomically); False when pyarrow is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        logger.info("pyarrow is not installed: no %s", path.name)
        return False
    table = pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string())})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
    return True


def row_to_transcription(row: dict[str, Any]) -> Transcription:
    """A result row back as the :class:`Transcription` it was made from (for the writers)."""
    segments = [_segment(s) for s in row["segments"]]
    return Transcription(
        row["text"], row["language"], row["language_probability"], row["duration"], segments,
        warnings=tuple(row.get("warnings", ())),
    )  # fmt: skip


def _segment(s: dict[str, Any]) -> Segment:
    return Segment(
        s["id"], s["start"], s["end"], s["text"],
        _words(s.get("words"), "word"), _words(s.get("chars"), "char"),
        s.get("avg_logprob"), s.get("no_speech_prob"), s.get("compression_ratio"),
    )  # fmt: skip


def _words(dicts: list[dict[str, Any]] | None, key: str) -> tuple[Word, ...]:
    """Words (or characters) from their ``to_dict`` form, whose text is under ``key``."""
    return tuple(Word(d["start"], d["end"], d[key], d["probability"]) for d in dicts or ())


def safe_relative(item_id: str) -> str:
    """An item id as a relative path inside the output folder (no root, no ``..``)."""
    parts = [p for p in item_id.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a JSONL file (a results or errors manifest)."""
    return _read_jsonl(Path(path))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _same_file(row: dict[str, Any], item: Item) -> bool:
    return row.get("size") == item.size and row.get("mtime_ns") == item.mtime_ns


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"
