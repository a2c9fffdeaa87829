"""Dynamic batching: requests from many callers coalesced into model batches, on one thread that owns the model.

Request handlers encode their items (:meth:`Scorer.encode`, in the thread pool) and :meth:`Batcher.submit` them;
the worker thread takes the oldest waiting request, waits up to ``max_wait_ms`` for more to join while the batch
has room (``max_batch_size`` responses, ``max_batch_tokens`` padded tokens), scores them in one
:meth:`Scorer.score_items` call and hands each caller its own slice. The event loop never runs the model.

Admission is bounded: :meth:`reserve` counts the responses waiting or being scored and refuses past
``max_queue_items`` (the server answers 503 with ``Retry-After``), so memory stays bounded under any load.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds ``max_queue_items`` responses already."""


class ScoringFailed(Exception):
    """The model failed on a batch (logged with its traceback on the server, never sent to callers)."""


@dataclass
class Job:
    items: list[Any]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def longest(self) -> int:
        return max(it.tokens for it in self.items)


_STOP = object()


class Batcher:
    def __init__(
        self,
        score_items: Callable[[list[Any]], list[Any]],
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        max_wait_ms: float,
        max_queue_items: int,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.score_items = score_items
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue_items = max_queue_items
        self.on_batch = on_batch  # (responses, seconds) after each model call: metrics
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Responses admitted and not yet scored."""
        return self._pending

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rewardlab-scorer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Score everything already queued, then end the worker."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def reserve(self, n: int) -> None:
        """Admit ``n`` responses or raise :class:`QueueFull`. An empty queue admits any request, so one request
        larger than the queue is served rather than refused forever."""
        with self._lock:
            if self._pending and self._pending + n > self.max_queue_items:
                raise QueueFull
            self._pending += n

    def release(self, n: int) -> None:
        with self._lock:
            self._pending -= n

    async def submit(self, items: list[Any]) -> list[Any]:
        """Scores of ``items`` (already :meth:`reserve`\\ d; released by the worker once scored)."""
        loop = asyncio.get_running_loop()
        job = Job(items, loop.create_future(), loop)
        self._queue.put(job)
        return await job.future

    def _run(self) -> None:
        carry: Any = None
        while True:
            job = carry if carry is not None else self._queue.get()
            carry = None
            if job is _STOP:
                return
            batch, carry = self._gather(job)
            self._score(batch)

    def _gather(self, first: Job) -> tuple[list[Job], Any]:
        """``first`` and the jobs that join it: until the batch is full or ``max_wait`` after ``first`` was
        queued. Returns the batch and the job that did not fit (scored next), if any."""
        batch, rows, longest = [first], len(first.items), first.longest
        deadline = first.enqueued + self.max_wait
        while rows < self.max_batch_size:
            try:
                remaining = deadline - time.monotonic()
                nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return batch, nxt
            grown_rows, grown_longest = rows + len(nxt.items), max(longest, nxt.longest)
            if grown_rows > self.max_batch_size or grown_rows * grown_longest > self.max_batch_tokens:
                return batch, nxt
            batch.append(nxt)
            rows, longest = grown_rows, grown_longest
        return batch, None

    def _score(self, batch: list[Job]) -> None:
        items = [it for job in batch for it in job.items]
        start = time.perf_counter()
        try:
            scores: list[Any] | None = self.score_items(items)
        except Exception:  # a bug or an out-of-memory: fail these requests, keep serving
            logger.exception("scoring a batch of %d responses failed", len(items))
            scores = None
        if self.on_batch is not None:
            self.on_batch(len(items), time.perf_counter() - start)
        offset = 0
        for job in batch:
            n = len(job.items)
            result = scores[offset : offset + n] if scores is not None else None
            offset += n
            job.loop.call_soon_threadsafe(_resolve, job.future, result)
            self.release(n)


def _resolve(future: asyncio.Future, result: list[Any] | None) -> None:
    if future.done():  # the caller went away (client disconnected)
        return
    if result is None:
        future.set_exception(ScoringFailed())
    else:
        future.set_result(result)
