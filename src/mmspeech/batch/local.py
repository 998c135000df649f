"""The local runner: the work in this process (``workers=1``) or in N worker processes, each with
its own model and its share of the CPU threads.

A worker process that dies (killed, out of memory) breaks the pool: the pool is started again and
the units of work that had not come back are sent again; a unit whose worker died
``max_attempts`` times is returned as error rows (``stage: "worker"``), so one poisonous file
cannot stall the job.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from mmspeech.batch.work import Worker, WorkerSpec, error_row

logger = logging.getLogger(__name__)

Rows = list[dict[str, Any]]


class WorkerDiedError(RuntimeError):
    """The process running a unit of work died before returning it."""


class LocalRunner:
    """Runs probe and transcription units here or in a pool of ``workers`` processes."""

    def __init__(self, spec: WorkerSpec, workers: int = 1, max_attempts: int = 3):
        self.spec = spec
        self.workers = workers
        self.max_attempts = max_attempts
        self._here: Worker | None = None
        self._pool: ProcessPoolExecutor | None = None

    def probe(self, units: Sequence[Rows]) -> Iterator[Rows]:
        """Probe rows (or error rows) of each unit of item rows, as units finish."""
        return self._run("probe", units)

    def transcribe(self, shards: Sequence[Rows]) -> Iterator[Rows]:
        """Result rows (or error rows) of each shard of probe rows, as shards finish."""
        return self._run("transcribe", shards)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _run(self, method: str, units: Sequence[Rows]) -> Iterator[Rows]:
        if self.workers == 1:
            if self._here is None:
                self._here = Worker(self.spec)
            for unit in units:
                yield getattr(self._here, method)(unit)
            return
        attempts = [0] * len(units)
        todo = list(range(len(units)))
        while todo:
            pool = self._start_pool()
            running: dict[Future[Rows], int] = {
                pool.submit(_call, method, units[i]): i for i in todo
            }
            todo = []
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    try:
                        rows = future.result()
                    except BrokenProcessPool:
                        attempts[index] += 1
                        if attempts[index] < self.max_attempts:
                            todo.append(index)
                            continue
                        died = WorkerDiedError(
                            f"the worker process died {attempts[index]} times on this unit"
                        )
                        rows = [error_row(row, "worker", died) for row in units[index]]
                    yield rows
            if todo:
                logger.warning(
                    "a worker process died; restarting the pool for %d unit(s)", len(todo)
                )
                self.close()

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # workers fork from a server process that imported torch and the API once (fast
            # starts and restarts; no thread pools of this process are forked)
            context: multiprocessing.context.BaseContext
            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["mmspeech.api.asr", "mmspeech.batch.work"])
            else:  # Windows
                context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_init, initargs=(self.spec,)
            )
        return self._pool


_WORKER: Worker | None = None  # the model of this worker process


def _init(spec: WorkerSpec) -> None:
    global _WORKER
    _WORKER = Worker(spec)


def _call(method: str, unit: Rows) -> Rows:
    assert _WORKER is not None, "the pool's initializer sets the worker"
    return getattr(_WORKER, method)(unit)
