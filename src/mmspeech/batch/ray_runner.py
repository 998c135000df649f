"""The Ray runner: the same units of work as map_batches stages of Ray Data on actor pools.

Each stage is a dataset of units (a JSON string per row: the item rows of a probe unit, or the
probe rows of a shard), mapped one unit per call by an autoscaling pool of actors that each load
one model (``num_cpus``/``num_gpus`` per actor). Ray restarts a dead actor and retries its task
(Ray Data's defaults for actor pools: ``max_restarts=-1``, ``max_task_retries=-1``); the driver
writes each unit's rows as one shard whose name is a hash of its items, and skips a unit it has
already written, so every item is in the output exactly once. Only the driver writes: the
output folder need not be shared with the nodes (the audio must be readable from them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from mmspeech.batch.work import Worker, WorkerSpec
from mmspeech.errors import MissingDependencyError

logger = logging.getLogger(__name__)

Rows = list[dict[str, Any]]


class RayRunner:
    """Probe and transcription as Ray Data map_batches stages on actor pools."""

    def __init__(
        self,
        spec: WorkerSpec,
        address: str | None = None,
        actors: tuple[int, int] = (1, 2),
        actor_cpus: float = 1.0,
        actor_gpus: float = 0.0,
    ):
        try:
            import ray
        except ImportError as exc:
            raise MissingDependencyError(
                "Running a batch job on Ray needs Ray Data: pip install 'mmspeech[ray]'."
            ) from exc
        self.spec = spec
        self.actors = actors
        self.actor_cpus = actor_cpus
        self.actor_gpus = actor_gpus
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        logger.info("Ray cluster resources: %s", ray.cluster_resources())

    def probe(self, units: Sequence[Rows]) -> Iterator[Rows]:
        return self._stage("probe", units)

    def transcribe(self, shards: Sequence[Rows]) -> Iterator[Rows]:
        return self._stage("transcribe", shards)

    def close(self) -> None:
        import ray

        if self._started and ray.is_initialized():
            ray.shutdown()

    def _stage(self, method: str, units: Sequence[Rows]) -> Iterator[Rows]:
        import ray.data

        if not units:
            return
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI draws its own
        # one unit per row and block: a task is one unit, retried on its own
        dataset = ray.data.from_items(
            [{"unit": json.dumps(unit, ensure_ascii=False)} for unit in units],
            override_num_blocks=len(units),
        )
        threads = max(1, int(self.actor_cpus))
        worker_spec = replace(self.spec, threads=threads)
        mapped = dataset.map_batches(
            UnitActor,
            fn_constructor_args=(worker_spec, method),
            batch_size=1,
            concurrency=self.actors,
            num_cpus=self.actor_cpus,
            num_gpus=self.actor_gpus or None,
        )
        for row in mapped.iter_rows():
            yield json.loads(row["rows"])


class UnitActor:
    """A Ray Data actor: one model, one unit of work per call."""

    def __init__(self, spec: WorkerSpec, method: str):
        self.worker = Worker(spec)
        self.method = method

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        out = []
        for unit in batch["unit"]:
            rows = getattr(self.worker, self.method)(json.loads(unit))
            out.append(json.dumps(rows, ensure_ascii=False))
        return {"rows": out}
