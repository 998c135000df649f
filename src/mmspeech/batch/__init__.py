"""Batch jobs: a whole collection to a results manifest, resumable, on one machine or on Ray.

    from mmspeech.batch import transcribe_collection
    summary = transcribe_collection("recordings/", "out/", workers=2)   # out/results.jsonl

Parts: ``collection`` (what the job works on), ``store`` (the output folder: atomic shards,
resume, final manifests), ``work`` (probe, plan, transcribe: the same in every runner) and one
runner per engine, ``local`` (this process or worker processes) and ``ray_runner`` (Ray Data;
Ray is imported only there).
"""

from __future__ import annotations

from mmspeech.batch.collection import Item, read_collection
from mmspeech.batch.options import BatchOptions
from mmspeech.batch.run import BatchSummary, Progress, transcribe_collection
from mmspeech.batch.store import read_jsonl

__all__ = [
    "BatchOptions",
    "BatchSummary",
    "Item",
    "Progress",
    "read_collection",
    "read_jsonl",
    "transcribe_collection",
]
