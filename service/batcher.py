"""Dynamic batcher: images of concurrent requests run together, one batch at a time per device.

Each distinct :class:`BatchKey` (model, operation, settings that must match within a batch)
has its own lane: a queue and one worker task, opened by a request and closed when empty. The worker waits for the first request, then up
to ``max_wait`` seconds (measured from that request's arrival) for more, takes requests in
arrival order while they fit in ``max_batch_size`` images, runs the batch in a one-thread
executor off the event loop (the compute thread), and resolves each request's future with its own slice.

- The compute thread should be the only thread that runs parallel torch work: :meth:`Batcher.on_compute_thread`
  runs the models' loading and warm-up there too. Each thread that enters an OpenMP parallel region keeps
  its own team of threads; with more OpenMP threads than cores, libgomp cuts its spin-waiting to almost
  none, so the compute thread's team sleeps and wakes between the many short regions of a purification
  step (docs/PERFORMANCE.md, "The compute thread").

- A batch that runs out of device memory is split in halves and retried (recursively) before it
  fails; a batch that raises fails each of its requests with that error; the worker carries on.
- The queue is bounded across lanes (``max_queue_size`` images): beyond it :class:`QueueFull`
  is raised at once, with a Retry-After estimate.
- A request past its deadline raises :class:`DeadlineExceeded`; it is dropped from its lane
  and never answered late.
- :meth:`Batcher.close` stops accepting (:class:`ShuttingDown`), finishes what was accepted, exits.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from apudae.service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

BatchFn = Callable[[torch.Tensor], Sequence[Any]]
"""Runs one batch: (N, C, H, W) images -> N per-image results, in order."""


def run_split_on_oom(run: BatchFn, images: torch.Tensor) -> list[Any]:
    """``run(images)``; on out-of-memory, free the CUDA cache and run each half (recursively): a device
    that cannot hold the whole batch may hold its halves. Raises when a single image does not fit."""
    try:
        return list(run(images))
    except torch.OutOfMemoryError:
        if images.shape[0] == 1:
            raise
        log.warning("out of memory on a batch of %d images; retrying it in halves", images.shape[0])
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = images.shape[0] // 2
    return run_split_on_oom(run, images[:half]) + run_split_on_oom(run, images[half:])


class QueueFull(Exception):
    """The bounded queue has no room; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is at capacity; retry after {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The request was not done within its deadline."""


class ShuttingDown(Exception):
    """The batcher no longer accepts requests."""


class BatchKey(NamedTuple):
    """What must match within a batch. ``settings`` must be hashable (e.g. a frozen dataclass)."""

    model: str
    operation: str
    settings: Hashable = None


@dataclass(eq=False)
class _Request:
    images: torch.Tensor
    future: asyncio.Future
    enqueued: float
    taken: bool = False

    @property
    def size(self) -> int:
        return self.images.shape[0]


@dataclass(eq=False)
class _Lane:
    key: BatchKey
    run: BatchFn
    requests: deque[_Request] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    @property
    def images(self) -> int:
        return sum(r.size for r in self.requests)


class Batcher:
    """See the module docstring. Create and use it inside one running event loop."""

    def __init__(self, max_batch_size: int, max_wait: float, max_queue_size: int, metrics: ServiceMetrics):
        self.max_batch_size, self.max_wait, self.max_queue_size = max_batch_size, max_wait, max_queue_size
        self.metrics = metrics
        self._lanes: dict[BatchKey, _Lane] = {}
        self._queued = 0  # images waiting in all lanes
        self._running = 0  # batches being computed
        self._accepting = True
        self._changed = asyncio.Event()
        self._batch_seconds = 0.1  # moving average, for Retry-After
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apudae-compute")
        self.idle = threading.Event()  # set while nothing is queued or running (for background jobs)
        self.idle.set()

    @property
    def accepting(self) -> bool:
        return self._accepting

    async def on_compute_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the thread that runs the batches (see the module docstring), awaited."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def submit(self, key: BatchKey, images: torch.Tensor, run: BatchFn, deadline: float) -> list[Any]:
        """Queue ``images`` (k, C, H, W) and wait for their k results.

        ``run`` computes a batch of this key (the first request's ``run`` serves the lane);
        ``deadline`` is a ``time.monotonic()`` instant. Raises QueueFull, DeadlineExceeded, ShuttingDown or the
        batch's own error.
        """
        if not self._accepting:
            self.metrics.rejections.labels("shutting_down").inc()
            raise ShuttingDown("the server is shutting down")
        if self._queued + images.shape[0] > self.max_queue_size:
            self.metrics.rejections.labels("queue_full").inc()
            raise QueueFull(self._retry_after())
        lane = self._lanes.get(key) or self._open_lane(key, run)
        request = _Request(images, asyncio.get_running_loop().create_future(), time.monotonic())
        lane.requests.append(request)
        self._add_queued(key, request.size)
        lane.wakeup.set()
        try:
            return await asyncio.wait_for(request.future, max(0.0, deadline - time.monotonic()))
        except (TimeoutError, asyncio.CancelledError) as err:
            if not request.taken:
                lane.requests.remove(request)
                self._add_queued(key, -request.size)
            if isinstance(err, TimeoutError):
                self.metrics.rejections.labels("deadline").inc()
                raise DeadlineExceeded("the request did not finish within its deadline") from None
            raise

    async def close(self, timeout: float) -> None:
        """Stop accepting, wait up to ``timeout`` s for accepted requests, then stop the workers."""
        self._accepting = False
        try:
            await asyncio.wait_for(self._drained(), timeout)
        except TimeoutError:
            log.warning("shutdown: %d queued images not finished within %.0f s", self._queued, timeout)
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.task.cancel()
            for request in lane.requests:
                if not request.future.done():
                    request.future.set_exception(ShuttingDown("the server shut down before this request ran"))
        await asyncio.gather(*(lane.task for lane in lanes), return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _drained(self) -> None:
        while self._queued or self._running:
            self._changed.clear()
            await self._changed.wait()

    def _open_lane(self, key: BatchKey, run: BatchFn) -> _Lane:
        lane = _Lane(key, run)
        lane.task = asyncio.create_task(self._work(lane), name=f"batcher-{key.model}-{key.operation}")
        self._lanes[key] = lane
        return lane

    def _add_queued(self, key: BatchKey, images: int) -> None:
        self._queued += images
        self.metrics.queue_depth.labels(key.model, key.operation).inc(images)
        self._update_idle()

    def _update_idle(self) -> None:
        if self._queued or self._running:
            self.idle.clear()
        else:
            self.idle.set()
        self._changed.set()

    def _retry_after(self) -> int:
        batches_ahead = math.ceil(self._queued / self.max_batch_size)
        return max(1, math.ceil(batches_ahead * self._batch_seconds))

    async def _work(self, lane: _Lane) -> None:
        """Serve the lane until it is empty, then close it (many seeds must not leave many idle lanes)."""
        while lane.requests:
            await self._fill(lane)
            batch = self._take(lane)
            if batch:
                await self._run(lane, batch)
        del self._lanes[lane.key]  # no await since the check: the next request opens a new lane

    async def _fill(self, lane: _Lane) -> None:
        """Wait until the lane holds a full batch or its oldest request waited ``max_wait``."""
        until = lane.requests[0].enqueued + self.max_wait
        while lane.requests and lane.images < self.max_batch_size:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            lane.wakeup.clear()
            try:
                await asyncio.wait_for(lane.wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self, lane: _Lane) -> list[_Request]:
        """Pop requests in arrival order while they fit in a batch (at least one)."""
        batch: list[_Request] = []
        size = 0
        while lane.requests and not (batch and size + lane.requests[0].size > self.max_batch_size):
            request = lane.requests.popleft()
            request.taken = True
            self._add_queued(lane.key, -request.size)
            if request.future.done():
                continue
            self.metrics.queue_wait.labels(lane.key.model, lane.key.operation).observe(
                time.monotonic() - request.enqueued)
            batch.append(request)
            size += request.size
        return batch

    async def _run(self, lane: _Lane, batch: list[_Request]) -> None:
        model, operation = lane.key.model, lane.key.operation
        images = torch.cat([r.images for r in batch]) if len(batch) > 1 else batch[0].images
        self.metrics.batch_size.labels(model, operation).observe(images.shape[0])
        self._running += 1
        self._update_idle()
        started = time.monotonic()
        try:
            results = await self.on_compute_thread(run_split_on_oom, lane.run, images)
            if len(results) != images.shape[0]:
                raise RuntimeError(f"batch function returned {len(results)} results for {images.shape[0]} images")
        except Exception as err:  # the batch's error goes to each of its callers
            log.exception("batch of %d images for %s/%s failed", images.shape[0], model, operation)
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(err)
            return
        finally:
            elapsed = time.monotonic() - started
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * elapsed
            self.metrics.batch_seconds.labels(model, operation).observe(elapsed)
            self._running -= 1
            self._update_idle()
        offset = 0
        for request in batch:
            if not request.future.done():
                request.future.set_result(list(results[offset:offset + request.size]))
            offset += request.size
