"""Concurrency through the HTTP API: batching across requests, 429 when the queue is full, 503 past the deadline."""
from __future__ import annotations

import asyncio
import threading

import httpx

from apudae.service.main import create_app
from service_fixtures import digit_png, make_settings  # noqa: F401 (pytest fixtures)

WAIT = 30.0


def upload(count: int, seed: int = 0) -> list:
    return [("files", (f"{i}.png", digit_png(seed + i), "image/png")) for i in range(count)]


async def with_app(settings, scenario, gate: threading.Event | None = None):
    """Start the app, optionally make /score wait on ``gate``, run ``scenario(client, state)``, stop."""
    app = create_app(settings)
    state = app.state.service
    await state.start()
    runtime = state.model(None)
    if gate is not None:
        score = runtime.score
        runtime.started = threading.Event()

        def gated(images):
            runtime.started.set()
            assert gate.wait(WAIT)
            return score(images)
        runtime.score = gated
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            return await asyncio.wait_for(scenario(client, state), WAIT)
    finally:
        if gate is not None:
            gate.set()
        await state.stop()


def test_concurrent_requests_share_a_batch(make_settings):
    async def scenario(client, state):
        answers = await asyncio.gather(*(client.post("/score", files=upload(1, i)) for i in range(4)))
        labels = {"model": "tiny", "operation": "score"}
        sample = state.metrics.registry.get_sample_value
        return ([a.status_code for a in answers], sample("apudae_batch_size_images_count", labels),
                sample("apudae_batch_size_images_sum", labels))
    statuses, batches, images = asyncio.run(with_app(make_settings(max_batch_size=4, max_batch_wait=5.0), scenario))
    assert statuses == [200] * 4
    assert (batches, images) == (1, 4)  # one batch of four


def test_full_queue_answers_429_with_retry_after(make_settings):
    gate = threading.Event()

    async def scenario(client, state):
        running = asyncio.create_task(client.post("/score", files=upload(2)))
        await asyncio.to_thread(state.model(None).started.wait, WAIT)
        queued = asyncio.create_task(client.post("/score", files=upload(8)))
        while state.batcher._queued < 8:
            await asyncio.sleep(0.01)
        refused = await client.post("/score", files=upload(1))
        gate.set()
        return refused, await running, await queued
    refused, running, queued = asyncio.run(with_app(
        make_settings(max_queue_size=8, max_batch_size=2, max_batch_wait=0.001), scenario, gate))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "retry" in refused.json()["detail"]
    assert running.status_code == 200 and queued.status_code == 200


def test_past_the_deadline_answers_503(make_settings):
    gate = threading.Event()

    async def scenario(client, state):
        return await client.post("/score", files=upload(1))
    answer = asyncio.run(with_app(make_settings(request_deadline=0.05), scenario, gate))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert "deadline" in answer.json()["detail"]
