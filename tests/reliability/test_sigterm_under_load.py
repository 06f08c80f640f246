"""Issue 5 item 3: SIGTERM to a real ``apudae serve`` under load. /readyz stops answering 200 at
once, every request accepted before the signal is answered, later ones are refused (503 with
Retry-After, or the connection is refused once the server stops listening), nothing is lost, and
the process exits within its shutdown grace. Run with PNG uploads to /purify and with binary tensors to
the Open Inference Protocol's /v2/models/tiny-purify/infer.

A connection reset with no answer is counted apart: uvicorn's graceful shutdown closes only
connections whose request it has not started (headers not yet read), so such a request never
reached the service — the client knows it failed and may retry it. In production the preStop
delay of deploy/k8s drains traffic before SIGTERM so that none arrive then."""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest

from reliability_load import Load, Tally
from reliability_server import serve

GRACE = 10
SETTINGS = dict(max_batch_size=8, max_batch_wait=0.005, max_queue_size=64, max_images=8,
                request_deadline=GRACE, shutdown_grace=GRACE)
ROUTES = ("/purify", "/v2/models/tiny-purify/infer")  # PNG uploads; a binary tensor (Open Inference Protocol)
OPTIONS = {"variant": "A", "n": 20}
LOAD_SECONDS, SIGNAL_AT = 4.0, 1.5


async def probe_readiness(url: str, seconds: float) -> list[str]:
    """/readyz answers (status codes, or the error's name) for ``seconds``, on fresh connections."""
    seen = []
    until = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while time.monotonic() < until:
            try:
                seen.append(str((await client.get(f"{url}/readyz")).status_code))
            except httpx.HTTPError as err:
                seen.append(type(err).__name__)
            await asyncio.sleep(0.05)
    return seen


async def shutdown_under_load(served, route: str) -> dict:
    load = Load(served.url, route, OPTIONS, images=4, timeout=GRACE + 30)
    try:
        rate = 1.5 * max(await load.closed_loop(concurrency=4, seconds=2), 1.0)
        tally = Tally()
        traffic = asyncio.create_task(load.open_loop(rate, LOAD_SECONDS, tally))
        await asyncio.sleep(SIGNAL_AT)
        in_flight = tally.sent - sum(tally.statuses.values()) - tally.connection_refused - tally.lost
        signalled = time.monotonic()
        served.process.terminate()  # SIGTERM
        readiness = await probe_readiness(served.url, 1.0)
        await traffic
        exit_code = await asyncio.to_thread(served.process.wait, GRACE + 30)
        exit_seconds = time.monotonic() - signalled
    finally:
        await load.close()
    return {"rate_per_s": round(rate, 1), "in_flight_at_sigterm": in_flight, "readyz_after_sigterm": readiness,
            "exit_code": exit_code, "exit_seconds": round(exit_seconds, 2), **tally.summary()}


@pytest.mark.parametrize("route", ROUTES)
def test_sigterm_under_load_answers_every_accepted_request(tiny_models_dir, tmp_path, route):
    with serve(tiny_models_dir, tmp_path, **SETTINGS) as served:
        result = asyncio.run(asyncio.wait_for(shutdown_under_load(served, route), LOAD_SECONDS + GRACE + 90))
    log = served.log.read_text()
    print("sigterm:", json.dumps({k: v for k, v in result.items() if k != "readyz_after_sigterm"}),
          "readyz:", dict(Counter(result["readyz_after_sigterm"])))
    assert "200" not in result["readyz_after_sigterm"] and result["readyz_after_sigterm"]
    assert result["lost"] == 0 and result["errors"] == {}
    assert result["answered"] + result["refused"] + result["reset"] == result["sent"]
    assert set(result["statuses"]) <= {200, 429, 503} and result["refused_without_retry_after"] == 0
    assert result["in_flight_at_sigterm"] > 0 and result["answered"] > 0  # it really was under load
    assert result["exit_code"] in (0, -15) and result["exit_seconds"] < GRACE + 5
    assert "apudae.service.state: stopped" in log and "Traceback" not in log
