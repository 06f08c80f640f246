"""Served throughput and latency: ``apudae serve`` started by the bench on a loopback port, then loaded.

The service runs in its own process (``python -m service.cli serve``) on a model directory holding
only the benchmarked bundle; its batcher settings come from ``APUDAE_*`` variables. The mean batch size
of a run is the change of ``apudae_batch_size_images`` (sum / count) in ``/metrics`` across that run, and
the service's CPU time the change of ``process_cpu_seconds_total``; the load generator's is this process's
plus that of the child processes it waited for (wrk). The compute thread's share of the run (compute duty)
and its images per second of compute (in-batch rate) come from ``apudae_batch_compute_duration_seconds``:
served images/s = compute duty x in-batch rate, so a gap to the offline engine shows as idle compute (the
batcher or the request path cannot feed it) or as slower compute (the cores are shared).

Closed-loop load comes from wrk when it is installed (``ServePlan.closed_loop_generator``: its CPU cost
per request is ~1/100 of the Python clients', see ``wrk.py``), else from ``load.closed_loop``; open-loop
load always from ``load.open_loop``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from apudae.training.bench.load import LoadRun, Target, closed_loop, open_loop
from apudae.training.bench.stats import Spread
from apudae.training.bench.wrk import wrk_closed_loop

log = logging.getLogger(__name__)
BATCH_METRIC = "apudae_batch_size_images"
COMPUTE_METRIC = "apudae_batch_compute_duration_seconds"
CPU_METRIC = "process_cpu_seconds"


@dataclass(frozen=True)
class ServePlan:
    """A served sweep: closed-loop client counts, open-loop rates as fractions of the closed-loop
    saturation, seconds per point, repeats per point, and the batcher settings to serve with."""

    concurrency: tuple[int, ...]
    rate_fractions: tuple[float, ...]
    duration: float
    repeats: int
    max_batch_size: int
    max_batch_wait: float
    max_queue_size: int
    closed_loop_generator: str = "python"  # "wrk" or "python"
    precision: str = "auto"  # the service's APUDAE_PRECISION
    startup_timeout: float = 600.0

    def closed_loop(self, target: Target, clients: int, duration: float):
        """The closed-loop run of this plan's generator (a coroutine)."""
        load = wrk_closed_loop if self.closed_loop_generator == "wrk" else closed_loop
        return load(target, clients, duration)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_service(bundle_dir: Path, max_batch_size: int, plan: ServePlan, threads: int):
    """Start ``apudae serve`` on ``bundle_dir`` alone; yield its base URL once /readyz answers 200."""
    with tempfile.TemporaryDirectory(prefix="apudae-bench-") as models:
        (Path(models) / bundle_dir.name).symlink_to(bundle_dir.resolve(), target_is_directory=True)
        port = _free_port()
        env = {**os.environ, "APUDAE_MODEL_DIR": models, "APUDAE_HOST": "127.0.0.1", "APUDAE_PORT": str(port),
               "APUDAE_MAX_BATCH_SIZE": str(max_batch_size), "APUDAE_MAX_BATCH_WAIT": str(plan.max_batch_wait),
               "APUDAE_MAX_QUEUE_SIZE": str(plan.max_queue_size), "APUDAE_LOG_LEVEL": "warning",
               "APUDAE_PRECISION": plan.precision,
               "OMP_NUM_THREADS": str(threads), "APUDAE_MAX_IMAGES": str(min(64, plan.max_queue_size))}
        process = subprocess.Popen([sys.executable, "-m", "apudae.service.cli", "serve"], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process, plan.startup_timeout)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(base: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"apudae serve exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"apudae serve was not ready within {timeout:.0f} s")


IN_FLIGHT_METRIC = "apudae_requests_in_flight"


@dataclass(frozen=True)
class ServiceTotals:
    """Running totals read from /metrics: images and batches computed for a model and the seconds its batches
    took, the service process's CPU seconds (NaN where the platform does not export them) and the requests it
    is handling now."""

    images: float
    batches: float
    compute_seconds: float
    cpu_seconds: float
    in_flight: float


def service_totals(base: str, model: str) -> ServiceTotals:
    """The service's totals now, from its /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    totals = {(BATCH_METRIC, "_sum"): 0.0, (BATCH_METRIC, "_count"): 0.0, (COMPUTE_METRIC, "_sum"): 0.0}
    cpu = in_flight = float("nan")
    for family in text_string_to_metric_families(text):
        if family.name == CPU_METRIC:
            cpu = family.samples[0].value
        if family.name == IN_FLIGHT_METRIC:
            in_flight = family.samples[0].value
        if family.name not in (BATCH_METRIC, COMPUTE_METRIC):
            continue
        for sample in family.samples:
            key = (family.name, sample.name.removeprefix(family.name))
            if key in totals and sample.labels.get("model") == model:
                totals[key] += sample.value
    return ServiceTotals(totals[BATCH_METRIC, "_sum"], totals[BATCH_METRIC, "_count"], totals[COMPUTE_METRIC, "_sum"],
                         cpu, in_flight)


def drained(base: str, model: str, timeout: float = 600.0) -> ServiceTotals:
    """Wait until the service handles no request (wrk stops at its deadline and leaves its last requests
    in flight; they are still computed, and must be before the next run starts); its totals then."""
    deadline = time.monotonic() + timeout
    while (totals := service_totals(base, model)).in_flight > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service still handles {totals.in_flight:.0f} requests after {timeout:.0f} s")
        time.sleep(0.2)
    return totals


def _load_generator_cpu() -> float:
    """CPU seconds of this process and of its finished child processes (wrk; the service still runs)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _measure(base: str, target: Target, model: str, load) -> dict:
    """One load run, with the mean batch size and where the machine's CPU time went: the service's
    CPU seconds per computed image and the load generator's (this process and wrk) per request sent.
    The service's totals are read once it has drained, so the images it computed after the load
    stopped are counted with the CPU they cost; the CPU share is over the run and the drain."""
    before, client_before, started = drained(base, model), _load_generator_cpu(), time.monotonic()
    run: LoadRun = asyncio.run(load(target))
    client_cpu = _load_generator_cpu() - client_before
    after = drained(base, model)
    wall = time.monotonic() - started
    images, batches, server_cpu = after.images - before.images, after.batches - before.batches, \
        after.cpu_seconds - before.cpu_seconds
    compute = after.compute_seconds - before.compute_seconds
    summary = run.summary()
    return summary | {"mean_batch": images / batches if batches else None,
                      "compute_duty": compute / wall, "in_batch_rate": images / compute if compute else None,
                      "server_cpu_per_image": server_cpu / images if images else None,
                      "client_cpu_per_request": client_cpu / summary["sent"] if summary["sent"] else None,
                      "cpu_busy_share": (server_cpu + client_cpu) / (wall * (os.cpu_count() or 1))}


def _repeated(base: str, target: Target, model: str, load, repeats: int, **level) -> dict:
    runs = [_measure(base, target, model, load) for _ in range(repeats)]
    row = dict(level)
    for key in ("throughput", "p50", "p90", "p99", "rejected_share", "mean_batch", "compute_duty", "in_batch_rate",
                "server_cpu_per_image", "client_cpu_per_request", "cpu_busy_share"):
        values = [r[key] for r in runs if r[key] is not None and r[key] == r[key]]
        row[key] = Spread.of(values).to_dict() if values else None
    row["errors"] = sum(r["errors"] for r in runs)
    log.info("served %s: %.1f images/s, p99 %s", level, row["throughput"]["median"],
             row["p99"] and f"{row['p99']['median']:.3f} s")
    return row


def served_sweep(bundle_dir: Path, model: str, make_target: Callable[[str], Target], plan: ServePlan,
                 threads: int, rates: tuple[float, ...] | None = None) -> dict:
    """Closed-loop sweep, then open-loop runs at ``rates`` (default: ``plan.rate_fractions`` of the
    closed-loop peak), against a service with batches of at most ``plan.max_batch_size`` images, of the
    requests ``make_target(base_url)`` sends."""
    with running_service(bundle_dir, plan.max_batch_size, plan, threads) as base:
        target = make_target(base)
        asyncio.run(plan.closed_loop(target, max(plan.concurrency), min(plan.duration, 5.0)))  # warm-up
        closed = [_repeated(base, target, model, lambda t, c=c: plan.closed_loop(t, c, plan.duration),
                            plan.repeats, clients=c) for c in plan.concurrency]
        saturation = max(row["throughput"]["median"] for row in closed)
        rates = rates or tuple(f * saturation for f in plan.rate_fractions)
        opened = [_repeated(base, target, model, lambda t, r=r: open_loop(t, r, plan.duration), plan.repeats,
                            rate=r) for r in rates]
    return {"path": target.path, "max_batch_size": plan.max_batch_size, "max_batch_wait": plan.max_batch_wait,
            "closed_loop_generator": plan.closed_loop_generator, "open_loop_generator": "python (httpx)",
            "saturation_throughput": saturation, "closed_loop": closed, "open_loop": opened}
