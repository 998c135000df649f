"""``transcribe_collection``: a whole collection to a results manifest, resumable, on this machine
(in-process or N worker processes) or on a Ray cluster.

The job: read the collection; skip the items whose results are already in the output folder;
probe the rest (duration; language ID where no language is given); plan shards (by language,
then length); transcribe the shards, writing each as it comes back; write the final manifests.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from mmspeech.batch.collection import Item, read_collection
from mmspeech.batch.options import BatchOptions
from mmspeech.batch.store import AUDIO, RESULTS, ResultStore
from mmspeech.batch.work import WorkerSpec, items_to_rows, plan_shards

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Where a job stands; given to ``on_progress`` after every unit of work."""

    stage: str  # "probe" (duration and language ID) or "transcribe"
    items_done: int  # items of this stage done in this run (results and errors)
    items_total: int  # items of this stage in this run
    audio_s_done: float  # seconds of audio transcribed in this run
    audio_s_total: float  # seconds of audio to transcribe in this run (known after the probe)
    elapsed_s: float  # wall time since the stage started

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (audio rate when known, else item rate)."""
        if self.audio_s_done > 0 and self.audio_s_total > 0:
            rate = self.audio_s_done / self.elapsed_s
            return (self.audio_s_total - self.audio_s_done) / rate
        if self.items_done > 0:
            return (self.items_total - self.items_done) * self.elapsed_s / self.items_done
        return None


@dataclass(frozen=True)
class BatchSummary:
    """What a job did."""

    output: Path  # the output folder
    items: int  # items in the collection
    skipped: int  # items whose results were already there
    results: int  # items with a result in the final manifest
    errors: int  # items in the errors manifest
    audio_s: float  # seconds of audio transcribed in this run
    wall_s: float  # wall time of this run
    manifest: Path | None  # results.jsonl; None when it could not be completed


def transcribe_collection(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    options: BatchOptions | None = None,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    **overrides: Any,
) -> BatchSummary:
    """Transcribe every item of a collection into ``output`` (see ``mmspeech.batch``).

    Args:
        inputs: folder(s), glob(s), manifest(s) (CSV/TSV/JSONL with ``path`` and optional
            ``id``, ``language``, ``text``), audio files, or a ``datasets.Dataset`` with an
            audio column (its audio bytes are written once to ``output/audio``).
        output: the output folder (created); rerunning with the same one resumes.
        options: the job's settings; ``**overrides`` replace some of them
            (``transcribe_collection(src, out, language="fra", workers=2)``).
        on_progress: called with a :class:`Progress` after every unit of work.

    Raises:
        TypeError: an unknown keyword.
        ConfigError: bad inputs or options.
    """
    known = {f.name for f in fields(BatchOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"transcribe_collection() got unexpected keyword argument(s) {unknown}")
    options = replace(options or BatchOptions(), **overrides)
    began = time.perf_counter()
    items = read_collection(inputs, Path(output) / AUDIO, options.audio_column)
    store = ResultStore(output, force=options.force)
    pending = store.pending(items)
    logger.info("%d items, %d already done, %d to do", len(items), len(items) - len(pending),
                len(pending))  # fmt: skip
    audio_s = 0.0
    if pending:
        store.start()
        runner = make_runner(options)
        try:
            audio_s = _work(runner, store, pending, options, on_progress)
        finally:
            runner.close()
    counts = store.finish(items, parquet=options.parquet)
    results, errors = counts if counts is not None else (0, 0)
    return BatchSummary(
        Path(output), len(items), len(items) - len(pending), results, errors, audio_s,
        time.perf_counter() - began, store.root / RESULTS if counts is not None else None,
    )  # fmt: skip


def make_runner(options: BatchOptions) -> Any:
    """The runner the options ask for: Ray, or local processes."""
    spec = WorkerSpec(
        model=options.model, device=options.device, dtype=options.dtype,
        compute_type=options.compute_type, language=options.fixed_language,
        word_timestamps=options.word_timestamps, options=options.transcribe,
    )  # fmt: skip
    if options.ray:
        from mmspeech.batch.ray_runner import RayRunner

        return RayRunner(spec, options.ray_address, options.actors, options.actor_cpus,
                         options.actor_gpus)  # fmt: skip
    from mmspeech.batch.local import LocalRunner

    threads = options.threads
    if threads is None and options.workers > 1:
        threads = os.cpu_count() or 1
    if threads is not None:
        spec = replace(spec, threads=max(1, threads // options.workers))
    return LocalRunner(spec, options.workers, options.max_attempts)


def _work(
    runner: Any,
    store: ResultStore,
    pending: list[Item],
    options: BatchOptions,
    on_progress: Callable[[Progress], None] | None,
) -> float:
    """Probe, plan and transcribe ``pending``; returns the seconds of audio transcribed."""
    report = on_progress or (lambda progress: None)
    rows = items_to_rows(pending)
    units = [rows[i : i + options.shard_size] for i in range(0, len(rows), options.shard_size)]
    probes: list[dict[str, Any]] = []
    done, began = 0, time.perf_counter()
    for probed in runner.probe(units):
        failed = [row for row in probed if "error" in row]
        if failed:
            store.write_shard(failed)
        probes.extend(row for row in probed if "error" not in row)
        done += len(probed)
        report(Progress("probe", done, len(rows), 0.0, 0.0, time.perf_counter() - began))
    shards = plan_shards(probes, options.shard_size)
    total_s = sum(row["duration"] for row in probes)
    written: set[str] = set()
    done, audio_s, began = 0, 0.0, time.perf_counter()
    for shard_rows in runner.transcribe(shards):
        ids = {row["id"] for row in shard_rows}
        if ids <= written:  # a unit that came back twice (a retried task): written already
            logger.info("skipping a unit returned twice (%d items)", len(ids))
            continue
        store.write_shard(shard_rows)
        store.write_transcripts(shard_rows, options.formats)
        written |= ids
        done += len(shard_rows)
        audio_s += sum(row["duration"] for row in shard_rows if "duration" in row)
        report(Progress("transcribe", done, len(probes), audio_s, total_s,
                        time.perf_counter() - began))  # fmt: skip
    return audio_s
