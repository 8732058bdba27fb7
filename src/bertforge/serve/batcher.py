"""Dynamic batching: requests wait in one bounded queue; one worker takes the rows of the oldest ones, sorts
them by length and cuts them into batches under a padded-token budget (as ``inference.encode`` does), runs
each batch in the model thread so that the event loop keeps answering, and hands every request its rows'
results.

The model thread (``model_thread``) should be the only thread that runs torch in the process, loading the
model included: the OpenMP runtime keeps a team of threads for each thread that runs a parallel operation, and
two teams on the same cores made every forward pass ~1.5x slower (docs/serving.md).

A request is a *job*: its rows (one model input each, with a length in tokens) and a future. A job that
is cancelled (its client went away, its deadline passed) leaves the queue at once; rows of it already
running finish, and their results are dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bertforge import allocator
from bertforge.data.batching import length_sorted_batches

MAX_BATCH_ROWS = 4096  # rows per forward pass, whatever their length (the token budget binds first)
POOL_BUDGETS = 2  # the worker takes up to this many token budgets of rows at once, to sort them together
UNBATCHED_TOKENS = 1 << 40  # batching off: a request's rows all go in one forward pass
# The model thread hands freed memory back to the system (allocator.trim) at most this often. Batches of
# ever-different shapes leave freed blocks scattered through glibc's heaps, which it keeps, so RSS grows for
# as long as the server runs. A trim a second holds it within a few percent at a cost inside the noise; a fixed
# low mmap threshold holds it too, but maps and faults in every large tensor afresh (docs/serving.md). A
# server that falls idle trims once more, TRIM_EVERY_S after the last trim, or the blocks freed in a load's
# last second would stay.
TRIM_EVERY_S = 1.0


def model_thread() -> ThreadPoolExecutor:
    """The one thread that loads the model and runs every batch (see above)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertforge-model")


class QueueFull(Exception):
    """No room for another request; the client should retry later (429)."""


class Closed(Exception):
    """The server is draining: it finishes the requests it has and takes no new ones (503)."""


@dataclass(eq=False)
class Job:
    """One request: the rows of one operation, and where their results go."""

    op: str
    rows: Sequence[Any]
    lengths: Sequence[int]
    future: asyncio.Future
    enqueued: float
    results: list = field(default_factory=list)
    taken: int = 0  # rows handed to the worker so far
    done: int = 0  # rows with a result
    cancelled: bool = False
    finished: bool = False  # no longer counts against the queue's capacity

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


@dataclass
class BatchStats:
    """What the worker has done, for tests and /metrics."""

    batches: int = 0
    rows: int = 0
    max_rows: int = 0
    dropped: int = 0  # jobs cancelled before all their rows ran


class Batcher:
    """One queue and one worker over ``run(op, rows) -> outputs`` (one output per row, called in a thread).

    ``max_batch_tokens``: padded tokens per forward pass (rows x longest row); 0 turns batching off, so
    each request runs alone. ``max_wait_ms``: how long the oldest request waits for others to fill a
    batch. ``max_pending``: requests admitted at once, queued or running; beyond it ``submit`` raises
    QueueFull. ``on_batch(op, rows, padded_tokens, seconds)`` and ``on_depth(n)`` report to metrics.
    ``executor``: the model thread that loaded the model (``model_thread``); one of its own otherwise.
    """

    def __init__(self, run: Callable[[str, list], list], *, max_batch_tokens: int, max_wait_ms: float,
                 max_pending: int, on_batch: Callable[[str, int, int, float], None] | None = None,
                 on_depth: Callable[[int], None] | None = None, executor: ThreadPoolExecutor | None = None):
        if max_batch_tokens < 0 or max_wait_ms < 0 or max_pending < 1:
            raise ValueError(f"bad batcher limits: max_batch_tokens={max_batch_tokens}, "
                             f"max_wait_ms={max_wait_ms}, max_pending={max_pending}")
        self._run, self.max_batch_tokens = run, max_batch_tokens
        self.max_wait, self.max_pending = max_wait_ms / 1000, max_pending
        self._on_batch, self._on_depth = on_batch, on_depth
        self._queue: deque[Job] = deque()
        self._pending_tokens: dict[str, int] = {}
        self._admitted = 0
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = executor
        self._closing = False
        self._trim, self._trimmed = (allocator.trim if allocator.available() else None), time.monotonic()
        self._untrimmed = False  # a batch ran since the last trim
        self.stats = BatchStats()

    @property
    def batching(self) -> bool:
        return self.max_batch_tokens > 0

    @property
    def closing(self) -> bool:
        """True once the server drains: no new requests."""
        return self._closing

    @property
    def depth(self) -> int:
        """Requests admitted and not finished (queued or running)."""
        return self._admitted

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._executor = self._executor or model_thread()
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="bertforge-batcher")

    async def close(self, timeout: float | None = None) -> None:
        """Take no new requests, finish the queued ones (up to ``timeout`` seconds), stop the worker."""
        self._closing = True
        if self._worker is None:
            return
        self._arrived.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._worker.cancel()
            for job in list(self._queue):
                self._fail(job, Closed("the server stopped before this request ran"))
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor, self._worker = None, None  # a restart gets a new model thread

    # --- the request side -------------------------------------------------------------------------

    def submit(self, op: str, rows: Sequence[Any], lengths: Sequence[int]) -> Job:
        """Queue a request's rows; its ``future`` gets the list of their outputs, in order."""
        if self._closing or self._worker is None:
            raise Closed("the server is shutting down")
        if self._admitted >= self.max_pending:
            raise QueueFull(f"{self._admitted} requests are already waiting or running")
        if not rows or len(rows) != len(lengths):
            raise ValueError(f"a job needs rows and one length per row, got {len(rows)} rows, {len(lengths)} lengths")
        loop = asyncio.get_running_loop()
        job = Job(op, rows, lengths, loop.create_future(), loop.time(), [None] * len(rows))
        self._queue.append(job)
        self._pending_tokens[op] = self._pending_tokens.get(op, 0) + job.tokens
        self._admitted += 1
        self._report_depth()
        self._arrived.set()
        return job

    def cancel(self, job: Job) -> None:
        """Drop a request that nobody waits for any more (its rows not yet run never run)."""
        if job.finished:
            return
        job.cancelled = True
        self._pending_tokens[job.op] -= sum(job.lengths[job.taken:])
        job.taken = len(job.rows)
        self.stats.dropped += 1
        if not job.future.done():
            job.future.cancel()
        self._finish(job)

    def _finish(self, job: Job) -> None:
        if not job.finished:
            job.finished = True
            self._admitted -= 1
            self._report_depth()

    def _fail(self, job: Job, error: BaseException) -> None:
        job.cancelled = True  # its other rows need not run
        if not job.future.done():
            job.future.set_exception(error)
        self._finish(job)

    def _report_depth(self) -> None:
        if self._on_depth is not None:
            self._on_depth(self._admitted)

    # --- the worker -------------------------------------------------------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._queue and (self._queue[0].cancelled or self._queue[0].taken == len(self._queue[0].rows)):
                self._queue.popleft()
            if not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                if not self._untrimmed or self._trim is None:
                    await self._arrived.wait()
                    continue
                try:  # idle: trim once it is time, unless work comes first
                    due = self._trimmed + TRIM_EVERY_S - time.monotonic()
                    await asyncio.wait_for(self._arrived.wait(), max(0.0, due))
                except asyncio.TimeoutError:
                    await loop.run_in_executor(self._executor, self._trim_now)
                continue
            oldest = self._queue[0]
            if self.batching:
                await self._gather(oldest)
                if oldest.cancelled:  # its client left while it waited: the next oldest waits its own time
                    continue
            for batch in self._take(oldest.op):
                live = [(job, i) for job, i in batch if not job.cancelled]
                if live:
                    await self._run_batch(loop, oldest.op, live)

    async def _gather(self, oldest: Job) -> None:
        """Wait until the oldest request has waited ``max_wait`` or its operation has a full batch."""
        loop = asyncio.get_running_loop()
        deadline = oldest.enqueued + self.max_wait
        while (self._pending_tokens.get(oldest.op, 0) < self.max_batch_tokens and not self._closing
               and not oldest.cancelled):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self, op: str) -> list[list[tuple[Job, int]]]:
        """The next batches of ``op``: rows of the oldest requests, sorted by length, under the budget."""
        if not self.batching:  # one request per forward pass
            job = next(j for j in self._queue if not j.cancelled and j.taken < len(j.rows))
            rows = [(job, i) for i in range(job.taken, len(job.rows))]
            self._pending_tokens[job.op] -= sum(job.lengths[job.taken:])
            job.taken = len(job.rows)
            return [rows]
        pool: list[tuple[Job, int]] = []
        tokens, limit = 0, POOL_BUDGETS * self.max_batch_tokens
        for job in self._queue:
            if job.cancelled or job.op != op:
                continue
            while job.taken < len(job.rows) and tokens < limit:
                pool.append((job, job.taken))
                tokens += job.lengths[job.taken]
                job.taken += 1
            if tokens >= limit:
                break
        self._pending_tokens[op] -= tokens
        self._queue = deque(j for j in self._queue if not j.cancelled and j.taken < len(j.rows))
        lengths = [job.lengths[i] for job, i in pool]
        return [[pool[k] for k in batch]
                for batch in length_sorted_batches(lengths, self.max_batch_tokens, MAX_BATCH_ROWS)]

    def _run_and_tidy(self, op: str, rows: list) -> list:
        """In the model thread: the batch's outputs, then freed memory back to the system if it is time."""
        try:
            return self._run(op, rows)
        finally:
            self._untrimmed = True
            if self._trim is not None and time.monotonic() - self._trimmed >= TRIM_EVERY_S:
                self._trim_now()

    def _trim_now(self) -> None:
        """In the model thread: hand freed memory back to the system."""
        self._trim()
        self._trimmed, self._untrimmed = time.monotonic(), False

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, op: str, live: list[tuple[Job, int]]) -> None:
        rows = [job.rows[i] for job, i in live]
        padded = len(rows) * max(job.lengths[i] for job, i in live)
        start = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self._run_and_tidy, op, rows)
            if len(outputs) != len(rows):
                raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(rows)} rows")
        except Exception as error:  # noqa: BLE001 - handed to each waiting request, which answers 500
            for job, _ in live:
                self._fail(job, error)
            return
        seconds = time.perf_counter() - start
        self.stats.batches += 1
        self.stats.rows += len(rows)
        self.stats.max_rows = max(self.stats.max_rows, len(rows))
        if self._on_batch is not None:
            self._on_batch(op, len(rows), padded, seconds)
        for (job, i), output in zip(live, outputs):
            if job.cancelled or job.future.done():
                continue
            job.results[i] = output
            job.done += 1
            if job.done == len(job.rows):
                job.future.set_result(job.results)
                self._finish(job)
