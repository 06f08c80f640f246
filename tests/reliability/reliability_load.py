"""Load for the reliability tests: a closed loop to find saturation, an open loop at a fixed arrival
rate (no coordinated omission), and the tally of what came back.

Every request goes on a fresh connection, so a refused connection (the server no longer listens)
is told apart from a request that was accepted and then dropped (lost). A connection closed with
no answer is counted apart (``reset``): on shutdown uvicorn closes only connections whose request
headers it has not finished reading, so there it means "never accepted"; anywhere else it is lost."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import torch

from apudae.training.bench.inputs import tensor_request
from reliability_fixtures import digit_png, files_field

REFUSALS = (429, 503)


@dataclass
class Tally:
    """Outcomes of a run: sent = answered + refused + reset + lost. ``lost``: no answer (timeout, other
    errors); must stay 0. ``reset``: closed with no answer (see the module docstring)."""

    sent: int = 0
    answered: int = 0  # 200
    refused: int = 0  # 429/503 with Retry-After, or connection refused before acceptance
    reset: int = 0
    lost: int = 0
    statuses: Counter = field(default_factory=Counter)
    refused_without_retry_after: int = 0
    connection_refused: int = 0
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # of the 200s, seconds

    def summary(self) -> dict:
        return {"sent": self.sent, "answered": self.answered, "refused": self.refused, "reset": self.reset,
                "lost": self.lost,
                "statuses": dict(self.statuses), "connection_refused": self.connection_refused,
                "refused_without_retry_after": self.refused_without_retry_after, "errors": dict(self.errors),
                "max_latency_s": round(max(self.latencies, default=0.0), 3)}


def request_of(route: str, params: dict, images: int) -> dict:
    """httpx keyword arguments of a request of ``images`` images with options ``params``: PNG uploads in the
    query's options, or for a /v2 infer route a binary UINT8 tensor with ``params`` as request parameters."""
    if route.startswith("/v2/"):
        body, headers = tensor_request(torch.rand(images, 1, 28, 28, generator=torch.Generator().manual_seed(0)),
                                       params)
        return {"content": body, "headers": headers}
    return {"params": params, "files": files_field(*[(f"{i}.png", digit_png(i)) for i in range(images)])}


class Load:
    """Requests of ``images`` images to ``route`` of the service at ``url`` (``request_of``)."""

    def __init__(self, url: str, route: str, params: dict, images: int, timeout: float):
        self.url, self.route, self.timeout = url, route, timeout
        self.request = request_of(route, params, images)
        self.client = httpx.AsyncClient(base_url=url, timeout=timeout,
                                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))

    async def close(self) -> None:
        await self.client.aclose()

    async def one(self, tally: Tally) -> None:
        """Send one request and count its outcome."""
        tally.sent += 1
        started = time.monotonic()
        try:
            answer = await self.client.post(self.route, **self.request)
        except httpx.ConnectError:
            tally.refused += 1
            tally.connection_refused += 1
            return
        except (httpx.ReadError, httpx.RemoteProtocolError):
            tally.reset += 1
            return
        except httpx.HTTPError as err:
            tally.lost += 1
            tally.errors[type(err).__name__] += 1
            return
        tally.statuses[answer.status_code] += 1
        if answer.status_code == 200:
            tally.answered += 1
            tally.latencies.append(time.monotonic() - started)
        elif answer.status_code in REFUSALS:
            tally.refused += 1
            if "retry-after" not in answer.headers:
                tally.refused_without_retry_after += 1

    async def closed_loop(self, concurrency: int, seconds: float) -> float:
        """Throughput (200s per second) with ``concurrency`` clients sending back to back."""
        tally = Tally()
        until = time.monotonic() + seconds

        async def client() -> None:
            while time.monotonic() < until:
                await self.one(tally)
        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return tally.answered / (time.monotonic() - started)

    async def open_loop(self, rate: float, seconds: float, tally: Tally) -> None:
        """Start ``rate`` requests per second for ``seconds`` whatever comes back; wait for all of them."""
        count = int(rate * seconds)
        started = time.monotonic()
        tasks = []
        for i in range(count):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(tally)))
        await asyncio.gather(*tasks)
