"""HTTP load against a running service: closed-loop clients and open-loop fixed arrival rates.

Closed loop: ``clients`` tasks each send a request, wait for its answer, and send the next.
Open loop: requests leave on a Poisson schedule of ``rate`` per second whatever the answers do; each
latency is measured from the request's *scheduled* departure, so a stalled server cannot hide its
queueing (no coordinated omission). A :class:`Target` posts prepared bodies in turn: one encoded image (8-bit PNG,
or a JPEG photo) as multipart to ``POST /classify`` (``upload_target``), or one 8-bit image as a binary UINT8 tensor to the Open
Inference Protocol's ``POST /v2/models/{model}/infer`` (``tensor_target``). Both load generators (these
Python clients and wrk) send the same bytes.
"""
from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field

import httpx

from apudae.training.bench.stats import percentile

REJECTED = (429, 503)


def run_summary(answered: int, rejected: int, errors: int, elapsed: float, p50: float, p90: float,
                p99: float) -> dict:
    """One load run's figures: throughput (answered/s), latency percentiles (s), rejected share and counts."""
    sent = answered + rejected + errors
    return {"throughput": answered / elapsed if elapsed else 0.0, "p50": p50, "p90": p90, "p99": p99,
            "answered": answered, "rejected_share": rejected / sent if sent else 0.0, "errors": errors, "sent": sent}


@dataclass
class LoadRun:
    """What one load run saw: latencies (s) of answered requests, rejection and error counts, elapsed s."""

    latencies: list[float] = field(default_factory=list)
    rejected: int = 0
    errors: int = 0
    elapsed: float = 0.0

    def record(self, status: int, latency: float) -> None:
        if status == 200:
            self.latencies.append(latency)
        elif status in REJECTED:
            self.rejected += 1
        else:
            self.errors += 1

    def summary(self) -> dict:
        """See ``run_summary``."""
        return run_summary(len(self.latencies), self.rejected, self.errors, self.elapsed,
                           *(percentile(self.latencies, q) for q in (50, 90, 99)))


BOUNDARY = "apudae-bench-boundary"


class Target:
    """Where and what to send: ``POST {base_url}{path}`` under ``headers``, with ``bodies`` in turn."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str], bodies: list[bytes]):
        self.base_url, self.path, self.headers, self.bodies = base_url, path, headers, bodies
        self._bodies = itertools.cycle(bodies)

    async def send(self, client: httpx.AsyncClient) -> int:
        try:
            response = await client.post(self.base_url + self.path, content=next(self._bodies), headers=self.headers)
        except httpx.TransportError:
            return -1
        return response.status_code


def upload_target(base_url: str, model: str, uploads: list[bytes], media_type: str = "image/png") -> Target:
    """One encoded image of ``uploads`` (all of ``media_type``: PNG, or JPEG for photos) per request,
    multipart field ``files``, to ``/classify?model=<model>``."""
    suffix = media_type.split("/")[1]
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"image.{suffix}\"\r\n"
            f"Content-Type: {media_type}\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return Target(base_url, f"/classify?model={model}", {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                  [head + upload + tail for upload in uploads])


def tensor_target(base_url: str, model: str, requests: list[tuple[bytes, dict[str, str]]]) -> Target:
    """One request of ``requests`` (body, headers: ``inputs.tensor_request`` of one image each, so every
    header is the same) per request, to ``/v2/models/<model>/infer``."""
    headers = requests[0][1]
    if any(h != headers for _, h in requests):
        raise ValueError("the tensor requests must share their headers (the same shape and parameters)")
    return Target(base_url, f"/v2/models/{model}/infer", headers, [body for body, _ in requests])


def _client(connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0))


async def closed_loop(target: Target, clients: int, duration: float) -> LoadRun:
    """``clients`` concurrent senders for ``duration`` s; requests in flight at the end are awaited.
    Each sender has its own one-connection ``httpx.AsyncClient``, as separate client apps would."""
    run = LoadRun()
    start = time.perf_counter()
    end = start + duration

    async def sender() -> None:
        async with _client(1) as client:
            while time.perf_counter() < end:
                sent = time.perf_counter()
                status = await target.send(client)
                run.record(status, time.perf_counter() - sent)

    await asyncio.gather(*(sender() for _ in range(clients)))
    run.elapsed = time.perf_counter() - start
    return run


async def open_loop(target: Target, rate: float, duration: float, seed: int = 0, connections: int = 512) -> LoadRun:
    """Poisson arrivals at ``rate``/s for ``duration`` s; latency counted from each scheduled departure."""
    run = LoadRun()
    arrivals = random.Random(seed)
    async with _client(connections) as client:
        start = time.perf_counter()

        async def one(scheduled: float) -> None:
            status = await target.send(client)
            run.record(status, time.perf_counter() - scheduled)

        tasks, scheduled = [], start
        while True:
            scheduled += arrivals.expovariate(rate)
            if scheduled - start >= duration:
                break
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        run.elapsed = max(duration, time.perf_counter() - start)
    return run
