"""Inference off the event loop, with a bounded queue and micro-batching.

Requests become jobs in one queue. Worker coroutines take the oldest job and run it in a thread
pool; a job with a batch key (an ASR model, a language, the options) also takes every waiting job
with the same key — up to ``max_batch`` — after waiting at most ``batch_wait`` seconds for more to
arrive, and they run as one forward. A full queue refuses new jobs at once (429 with Retry-After),
so a burst never piles up unbounded memory or latency.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mmspeech.server.errors import APIError
from mmspeech.server.metrics import Metrics

logger = logging.getLogger(__name__)

BatchFn = Callable[[list[Any]], list[Any]]  # payloads -> results, same length and order


@dataclass
class Job:
    """One unit of work: ``run([payload])`` (or with others of the same ``key``)."""

    run: BatchFn
    payload: Any
    key: Hashable | None
    future: asyncio.Future[Any]
    # "inference" (counted in the batch-size histogram) or "decode" (an upload being decoded)
    work: str = "inference"
    queued_at: float = field(default_factory=time.perf_counter)


class Stream:
    """The items of a streaming job, in order, then ``None``; an exception in the generator
    arrives as the exception object.

    The whole stream must end within ``timeout`` seconds of being queued; :meth:`close` (the
    client went away) withdraws a queued job and stops a running one at its next item.
    """

    def __init__(self, scheduler: Scheduler, loop: asyncio.AbstractEventLoop, timeout: float):
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.stopped = threading.Event()
        self.job: Job | None = None
        self._scheduler = scheduler
        self._timeout = timeout
        self._deadline = loop.time() + timeout
        self._loop = loop

    async def get(self) -> Any:
        """The next item.

        Raises:
            APIError: 504 once the stream has run past its timeout (the job is stopped).
        """
        try:
            return await asyncio.wait_for(self.items.get(), self._deadline - self._loop.time())
        except asyncio.TimeoutError:
            self.close()
            raise self._scheduler._timed_out(self._timeout) from None

    def close(self) -> None:
        """Stop: a queued job never runs, a running one ends at its next item."""
        if not self.stopped.is_set():
            self.stopped.set()
            if self.job is not None and not self.job.future.done():
                self._scheduler._withdraw(self.job)


class Scheduler:
    """A bounded job queue served by worker coroutines that run jobs in threads."""

    def __init__(
        self,
        *,
        max_queue: int,
        max_batch: int,
        batch_wait: float,
        workers: int,
        retry_after: int,
        metrics: Metrics,
    ):
        self.max_queue = max_queue
        self.max_batch = max(1, max_batch)
        self.batch_wait = batch_wait
        self.workers = max(1, workers)
        self.retry_after = retry_after
        self.metrics = metrics
        self._pending: list[Job] = []
        self._running = 0
        self._arrived: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    @property
    def depth(self) -> int:
        """Jobs waiting or running."""
        return len(self._pending) + self._running

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="mmspeech-infer")
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(self._unavailable("the server is shutting down"))
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _unavailable(self, why: str) -> APIError:
        return APIError(
            503,
            f"Service unavailable: {why}; retry in {self.retry_after} s.",
            "service_unavailable",
            headers={"Retry-After": str(self.retry_after)},
        )

    def _refuse_when_full(self) -> None:
        """503 while stopping; 429 (counted in ``mmspeech_rejected_total``) when the queue is
        full: the same answer for plain and streaming requests."""
        if self._closing or self._arrived is None:
            raise self._unavailable("the server is not accepting work")
        if self.depth >= self.max_queue:
            self.metrics.count("mmspeech_rejected_total", {"reason": "queue_full"})
            raise APIError(
                429,
                f"Too many requests: {self.depth} are already queued or running (the limit is "
                f"{self.max_queue}); retry in {self.retry_after} s.",
                "queue_full",
                headers={"Retry-After": str(self.retry_after)},
            )

    def _timed_out(self, timeout: float) -> APIError:
        self.metrics.count("mmspeech_rejected_total", {"reason": "timeout"})
        return APIError(
            504,
            f"The request took longer than the server's {timeout:g} s limit; try shorter "
            "audio or text, or retry later.",
            "timeout",
        )

    def _withdraw(self, job: Job) -> None:
        """Take a job out of the queue (if it is still there) so that it never runs."""
        if job in self._pending:
            self._pending.remove(job)
        job.future.cancel()

    async def submit(
        self,
        run: BatchFn,
        payload: Any,
        key: Hashable | None = None,
        timeout: float = 120.0,
        work: str = "inference",
    ) -> Any:
        """Queue one job and wait for its result.

        A caller that is cancelled (its client went away) withdraws its job: a queued job
        never runs.

        Raises:
            APIError: 429 when the queue is full, 503 when the server is stopping, 504 when
                the result takes longer than ``timeout`` seconds.
        """
        self._refuse_when_full()
        assert self._arrived is not None
        job = Job(run, payload, key, asyncio.get_running_loop().create_future(), work)
        self._pending.append(job)
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except asyncio.CancelledError:  # the client went away: do not run its job
            self._withdraw(job)
            raise
        except asyncio.TimeoutError:
            self._withdraw(job)
            raise self._timed_out(timeout) from None

    async def stream(self, generate: Callable[[], Iterator[Any]], timeout: float) -> Stream:
        """Run a generator as one job whose items are read from the returned :class:`Stream`.

        Raises:
            APIError: 429 when the queue is full, 503 when the server is stopping.
        """
        self._refuse_when_full()
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        stream = Stream(self, loop, timeout)

        def run(payloads: list[Any]) -> list[Any]:
            try:
                for item in generate():
                    if stream.stopped.is_set():  # the reader has gone: stop at this item
                        break
                    loop.call_soon_threadsafe(stream.items.put_nowait, item)
            except Exception as error:  # handed to the response, which maps it
                loop.call_soon_threadsafe(stream.items.put_nowait, error)
            loop.call_soon_threadsafe(stream.items.put_nowait, None)
            return [None]

        stream.job = Job(run, None, None, loop.create_future())
        self._pending.append(stream.job)
        self._arrived.set()
        return stream

    # -- workers -------------------------------------------------------------------------------

    async def _next_job(self) -> Job:
        assert self._arrived is not None
        while True:
            while self._pending:
                job = self._pending.pop(0)
                if not job.future.done():  # a timed-out job is skipped
                    return job
            self._arrived.clear()
            await self._arrived.wait()

    def _take_same(self, key: Hashable, count: int) -> list[Job]:
        taken = [job for job in self._pending if job.key == key and not job.future.done()]
        taken = taken[:count]
        for job in taken:
            self._pending.remove(job)
        return taken

    async def _gather_batch(self, first: Job) -> list[Job]:
        batch = [first]
        if first.key is None or self.max_batch == 1:
            return batch
        assert self._arrived is not None
        deadline = time.perf_counter() + self.batch_wait
        while True:
            batch += self._take_same(first.key, self.max_batch - len(batch))
            remaining = deadline - time.perf_counter()
            if len(batch) >= self.max_batch or remaining <= 0:
                return batch
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                batch += self._take_same(first.key, self.max_batch - len(batch))
                return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next_job()
            batch = [first]
            self._running += 1
            try:
                batch = await self._gather_batch(first)
                self._running += len(batch) - 1
                await self._run_batch(loop, batch)
            finally:
                self._running -= len(batch)
                if self._pending and self._arrived is not None:
                    self._arrived.set()  # another worker may take what is left

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[Job]) -> None:
        now = time.perf_counter()
        if batch[0].work == "inference":
            self.metrics.observe("mmspeech_batch_size", len(batch))
        for job in batch:
            self.metrics.observe("mmspeech_queue_wait_seconds", now - job.queued_at)
        try:
            results = await loop.run_in_executor(
                self._executor, batch[0].run, [job.payload for job in batch]
            )
        except Exception as error:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)
