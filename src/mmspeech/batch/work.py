"""The work of a batch job, the same in every runner: probe (duration, language ID), plan the
shards, transcribe a shard. A :class:`Worker` holds one model; runners decide where it lives (this
process, a worker process, a Ray actor) and only move plain dicts in and out.

Rows are plain JSON dicts: a probe row or a result row per item, or an error row with ``stage``,
``error`` (the exception class) and ``message``. A bad file yields an error row, never an exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mmspeech.api.options import TranscribeOptions
from mmspeech.batch.collection import Item
from mmspeech.errors import MmspeechError

logger = logging.getLogger(__name__)

# what a bad item may raise; anything else is a bug and stops the job
ITEM_ERRORS = (MmspeechError, OSError, ValueError, RuntimeError)


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker loads and how it transcribes (picklable: sent to processes and actors)."""

    model: str  # ASR checkpoint
    device: str | None = None  # None: CUDA when available
    dtype: str | None = None  # parameter dtype
    compute_type: str | None = None  # load_asr's compute_type (None: float32, or dtype)
    language: str | None = None  # the language of every item; None: manifest's, else detected
    word_timestamps: bool = True  # timed words in the segments
    options: TranscribeOptions = field(default_factory=TranscribeOptions)
    threads: int | None = None  # torch threads of this worker; None: torch's default


class Worker:
    """One ASR model (loaded on first use) and the batch work done with it."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self._asr: Any = None

    @property
    def asr(self) -> Any:
        if self._asr is None:
            import torch

            from mmspeech.api.asr import load_asr

            if self.spec.threads is not None:
                torch.set_num_threads(self.spec.threads)
            spec = self.spec
            self._asr = load_asr(spec.model, device=spec.device, dtype=spec.dtype,
                                 compute_type=spec.compute_type)  # fmt: skip
            if self.spec.language is not None:  # a bad --language stops the job at once
                self._asr.set_language(self.spec.language)
        return self._asr

    def probe(self, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Duration and language of each item (rows of :meth:`Item.to_dict`): a probe row (the
        item's fields + ``duration``, ``language``, ``language_probability``, ``lid_s``) or an
        error row per item, in order."""
        from mmspeech.api.source import open_audio

        asr = self.asr
        rows: list[dict[str, Any]] = []
        sources: dict[int, Any] = {}
        for index, item in enumerate(items):
            stage = "read"
            try:
                source = open_audio(item["path"])
                stage = "language"
                language = self._language(item)
            except ITEM_ERRORS as exc:
                rows.append(error_row(item, stage, exc))
                continue
            sources[index] = source
            rows.append({**item, "duration": source.duration, "language": language,
                         "language_probability": None, "lid_s": 0.0})  # fmt: skip
        unknown = [i for i in sources if rows[i]["language"] is None and asr.languages]
        for batch, scores, seconds in self._detect([sources[i] for i in unknown], unknown):
            total = sum(rows[i]["duration"] for i in batch) or 1.0
            for i, score in zip(batch, scores, strict=True):
                if isinstance(score, Exception):
                    rows[i] = error_row(items[i], "lid", score)
                else:
                    rows[i].update(language=score.language, language_probability=score.probability,
                                   lid_s=seconds * rows[i]["duration"] / total)  # fmt: skip
        return rows

    def transcribe(self, shard: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Transcribe the probe rows of one shard (grouped by language: one adapter switch per
        group; the API batches short items by length and runs long ones through the long-form
        path); a result or error row per item, in order."""
        out: list[dict[str, Any] | None] = [None] * len(shard)
        for language in dict.fromkeys(row["language"] for row in shard):
            group = [i for i, row in enumerate(shard) if row["language"] == language]
            start = time.perf_counter()
            try:
                texts: list[Any] = self._transcribe([shard[i] for i in group], language)
            except ITEM_ERRORS:  # find the bad item(s): one by one
                texts = []
                for i in group:
                    try:
                        texts.extend(self._transcribe([shard[i]], language))
                    except ITEM_ERRORS as exc:
                        texts.append(exc)
            seconds = time.perf_counter() - start
            total = sum(shard[i]["duration"] for i in group) or 1.0
            for i, text in zip(group, texts, strict=True):
                row = shard[i]
                out[i] = (
                    error_row(row, "asr", text)
                    if isinstance(text, Exception)
                    else self._result(row, text, seconds * row["duration"] / total)
                )
        return [row for row in out if row is not None]

    # -- pieces ----------------------------------------------------------------------------------

    def _language(self, item: dict[str, Any]) -> str | None:
        """The item's language as the checkpoint's code (given, or from the manifest)."""
        from mmspeech.languages import resolve_language

        given = self.spec.language or item.get("language")
        if given is None or not self.asr.languages:
            return None if given is None else str(given)
        return resolve_language(str(given), self.asr.languages)  # LanguageError: an error row

    def _detect(self, sources: list[Any], indices: list[int]) -> Any:
        """(indices, scores or exceptions, seconds) per LID batch."""
        size = self.spec.options.batch_size
        for start in range(0, len(sources), size):
            batch, clips = indices[start : start + size], sources[start : start + size]
            began = time.perf_counter()
            try:
                scores: list[Any] = self.asr.detect_languages(clips, self.spec.options)
            except ITEM_ERRORS:
                scores = []
                for clip in clips:
                    try:
                        scores.extend(self.asr.detect_languages([clip], self.spec.options))
                    except ITEM_ERRORS as exc:
                        scores.append(exc)
            yield batch, scores, time.perf_counter() - began

    def _transcribe(self, rows: list[dict[str, Any]], language: str | None) -> list[Any]:
        from mmspeech.api.source import open_audio

        sources = [open_audio(row["path"]) for row in rows]
        words = self.spec.word_timestamps
        return list(self.asr.transcribe_batch(sources, language, words, self.spec.options))

    def _result(self, row: dict[str, Any], transcription: Any, asr_s: float) -> dict[str, Any]:
        asr = self.asr
        # the compute type load_asr resolved ("auto" -> what this device runs), else the dtype
        compute = getattr(asr.model, "compute_type", None) or str(asr.model.dtype)
        compute = compute.removeprefix("torch.")
        return {
            "id": row["id"],
            "path": row["path"],
            "size": row["size"],
            "mtime_ns": row["mtime_ns"],
            "duration": row["duration"],
            "language": transcription.language,
            "language_probability": row["language_probability"],
            "text": transcription.text,
            "reference": row.get("text"),
            "segments": [segment.to_dict() for segment in transcription.segments],
            "warnings": list(transcription.warnings),
            "model": self.spec.model,
            "compute_type": compute,
            "timings": {"lid_s": round(row["lid_s"], 6), "asr_s": round(asr_s, 6)},
        }


def error_row(item: dict[str, Any], stage: str, exc: BaseException) -> dict[str, Any]:
    """The errors-manifest row of an item that failed at ``stage``."""
    logger.info("%s failed (%s): %s: %s", item["id"], stage, type(exc).__name__, exc)
    return {
        "id": item["id"],
        "path": item["path"],
        "size": item.get("size"),
        "mtime_ns": item.get("mtime_ns"),
        "stage": stage,
        "error": type(exc).__name__,
        "message": str(exc),
    }


def plan_shards(probes: Sequence[dict[str, Any]], shard_size: int) -> list[list[dict[str, Any]]]:
    """Probe rows cut into shards: grouped by language, shortest first within a language (so a
    shard holds one language and items of similar length), ``shard_size`` items each."""
    ordered = sorted(probes, key=lambda r: (r["language"] or "", r["duration"], r["id"]))
    shards: list[list[dict[str, Any]]] = []
    for row in ordered:
        if shards and len(shards[-1]) < shard_size and shards[-1][0]["language"] == row["language"]:
            shards[-1].append(row)
        else:
            shards.append([row])
    return shards


def items_to_rows(items: Sequence[Item]) -> list[dict[str, Any]]:
    return [item.to_dict() for item in items]
