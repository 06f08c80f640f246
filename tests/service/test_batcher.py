"""The dynamic batcher on its own: batching, slicing, failures, the bounded queue, deadlines, drain."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from apudae.service.batcher import Batcher, BatchKey, DeadlineExceeded, QueueFull, ShuttingDown
from apudae.service.metrics import ServiceMetrics

KEY = BatchKey("m", "op", None)
LONG = 30.0  # seconds: a deadline no test reaches


class Recorder:
    """A batch function returning each image's first pixel, recording the batch sizes it saw."""

    def __init__(self, gate: threading.Event | None = None, fail_on: float | None = None):
        self.sizes: list[int] = []
        self.gate, self.fail_on = gate, fail_on
        self.started = threading.Event()

    def __call__(self, images: torch.Tensor) -> list[float]:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(LONG)
        self.sizes.append(images.shape[0])
        values = images[:, 0, 0, 0].tolist()
        if self.fail_on in values:
            raise RuntimeError("poisoned batch")
        return values


def images(*values: float) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1)


def batcher(**overrides) -> Batcher:
    options = dict(max_batch_size=8, max_wait=LONG, max_queue_size=32)
    options.update(overrides)
    return Batcher(**options, metrics=ServiceMetrics())


def deadline(seconds: float = LONG) -> float:
    return time.monotonic() + seconds


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, LONG))


def test_concurrent_requests_form_one_batch_and_each_gets_its_own_slice():
    async def scenario():
        b, fn = batcher(max_batch_size=6), Recorder()
        results = await asyncio.gather(b.submit(KEY, images(1), fn, deadline()),
                                       b.submit(KEY, images(2, 3), fn, deadline()),
                                       b.submit(KEY, images(4, 5, 6), fn, deadline()))
        await b.close(1)
        return results, fn.sizes
    results, sizes = run(scenario())
    assert results == [[1.0], [2.0, 3.0], [4.0, 5.0, 6.0]]
    assert sizes == [6]


def test_batch_closes_after_max_wait_with_what_it_has():
    async def scenario():
        b, fn = batcher(max_wait=0.01), Recorder()
        result = await b.submit(KEY, images(7), fn, deadline())
        await b.close(1)
        return result, fn.sizes
    assert run(scenario()) == ([7.0], [1])


def test_requests_that_do_not_fit_go_to_the_next_batch():
    async def scenario():
        b, fn = batcher(max_batch_size=4, max_wait=0.01), Recorder()
        results = await asyncio.gather(*(b.submit(KEY, images(i, i), fn, deadline()) for i in range(3)))
        await b.close(1)
        return results, fn.sizes
    results, sizes = run(scenario())
    assert results == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]
    assert sizes == [4, 2]


def test_a_request_larger_than_the_batch_runs_alone():
    async def scenario():
        b, fn = batcher(max_batch_size=2, max_wait=0.01), Recorder()
        result = await b.submit(KEY, images(1, 2, 3), fn, deadline())
        await b.close(1)
        return result, fn.sizes
    assert run(scenario()) == ([1.0, 2.0, 3.0], [3])


def test_different_keys_are_never_batched_together():
    async def scenario():
        b, fn = batcher(max_wait=0.01), Recorder()
        other = BatchKey("m", "op", "other settings")
        results = await asyncio.gather(b.submit(KEY, images(1), fn, deadline()),
                                       b.submit(other, images(2), fn, deadline()))
        await asyncio.sleep(0)
        lanes_left = len(b._lanes)
        await b.close(1)
        return results, sorted(fn.sizes), lanes_left
    assert run(scenario()) == ([[1.0], [2.0]], [1, 1], 0)  # idle lanes close


def test_a_failing_batch_fails_only_its_callers_and_the_worker_carries_on():
    async def scenario():
        b, fn = batcher(max_batch_size=2, max_wait=0.01), Recorder(fail_on=-1.0)
        first = await asyncio.gather(b.submit(KEY, images(-1), fn, deadline()),
                                     b.submit(KEY, images(5), fn, deadline()),  # same batch as the poison
                                     b.submit(KEY, images(6), fn, deadline()),  # next batch
                                     return_exceptions=True)
        after = await b.submit(KEY, images(8), fn, deadline())
        await b.close(1)
        return first, after
    first, after = run(scenario())
    assert isinstance(first[0], RuntimeError) and isinstance(first[1], RuntimeError)
    assert first[2] == [6.0]
    assert after == [8.0]


def test_full_queue_refuses_at_once_with_retry_after():
    async def scenario():
        gate = threading.Event()
        b, fn = batcher(max_batch_size=1, max_wait=0.001, max_queue_size=2), Recorder(gate)
        running = asyncio.create_task(b.submit(KEY, images(1), fn, deadline()))
        await asyncio.to_thread(fn.started.wait, LONG)  # the first request left the queue and runs
        queued = [asyncio.create_task(b.submit(KEY, images(v), fn, deadline())) for v in (2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull) as refused:
            await b.submit(KEY, images(4), fn, deadline())
        gate.set()
        results = await asyncio.gather(running, *queued)
        await b.close(1)
        return refused.value.retry_after, results, b.metrics.rejections.labels("queue_full")._value.get()
    retry_after, results, rejected = run(scenario())
    assert retry_after >= 1
    assert results == [[1.0], [2.0], [3.0]]
    assert rejected == 1


def test_past_its_deadline_a_request_gets_deadline_exceeded_and_leaves_the_queue():
    async def scenario():
        gate = threading.Event()
        b, fn = batcher(max_batch_size=1, max_wait=0.001), Recorder(gate)
        running = asyncio.create_task(b.submit(KEY, images(1), fn, deadline(0.05)))
        await asyncio.to_thread(fn.started.wait, LONG)
        with pytest.raises(DeadlineExceeded):
            await b.submit(KEY, images(2), fn, deadline(0.05))  # waits in the queue behind the blocked batch
        queued_after_timeout = b._queued
        with pytest.raises(DeadlineExceeded):
            await running  # its batch is still running: no late answer
        gate.set()
        later = await b.submit(KEY, images(3), fn, deadline())
        await b.close(1)
        return queued_after_timeout, later, fn.sizes
    queued, later, sizes = run(scenario())
    assert queued == 0
    assert later == [3.0]
    assert sizes == [1, 1]  # the expired queued request never ran


def test_close_finishes_accepted_requests_then_refuses_new_ones():
    async def scenario():
        gate = threading.Event()
        b, fn = batcher(max_batch_size=2, max_wait=0.001), Recorder(gate)
        accepted = [asyncio.create_task(b.submit(KEY, images(v), fn, deadline())) for v in range(5)]
        await asyncio.to_thread(fn.started.wait, LONG)
        closing = asyncio.create_task(b.close(LONG))
        await asyncio.sleep(0)
        with pytest.raises(ShuttingDown):
            await b.submit(KEY, images(9), fn, deadline())
        gate.set()
        await closing
        return [task.result() for task in accepted]
    assert run(scenario()) == [[0.0], [1.0], [2.0], [3.0], [4.0]]


def test_idle_event_is_clear_while_work_is_queued_or_running():
    async def scenario():
        gate = threading.Event()
        b, fn = batcher(max_wait=0.001), Recorder(gate)
        idle_before = b.idle.is_set()
        task = asyncio.create_task(b.submit(KEY, images(1), fn, deadline()))
        await asyncio.to_thread(fn.started.wait, LONG)
        idle_during = b.idle.is_set()
        gate.set()
        await task
        idle_after = b.idle.is_set()
        await b.close(1)
        return idle_before, idle_during, idle_after
    assert run(scenario()) == (True, False, True)
