"""Served throughput and latency: ``apudae serve`` started by the bench on a loopback port, then loaded.

The service runs in its own process (``python -m service.cli serve``) on a model directory holding
only the benchmarked bundle; its batcher settings come from ``APUDAE_*`` variables. The mean batch size
of a run is the change of ``apudae_batch_size_images`` (sum / count) in ``/metrics`` across that run, and
the service's CPU time the change of ``process_cpu_seconds_total``; the load generator's is this process's.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from service.bench.load import LoadRun, Target, closed_loop, open_loop
from service.bench.stats import Spread

log = logging.getLogger(__name__)
BATCH_METRIC = "apudae_batch_size_images"
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
    startup_timeout: float = 600.0


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
               "OMP_NUM_THREADS": str(threads), "APUDAE_MAX_IMAGES": str(min(64, plan.max_queue_size))}
        process = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env)
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


def service_totals(base: str, model: str) -> tuple[float, float, float]:
    """(images, batches) the service has computed for ``model`` so far and the CPU seconds its process
    has used (``process_cpu_seconds_total``, NaN where the platform does not export it), from /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    totals = {"_sum": 0.0, "_count": 0.0}
    cpu = float("nan")
    for family in text_string_to_metric_families(text):
        if family.name == CPU_METRIC:
            cpu = family.samples[0].value
        if family.name != BATCH_METRIC:
            continue
        for sample in family.samples:
            suffix = sample.name.removeprefix(BATCH_METRIC)
            if suffix in totals and sample.labels.get("model") == model:
                totals[suffix] += sample.value
    return totals["_sum"], totals["_count"], cpu


def _measure(base: str, target: Target, model: str, load) -> dict:
    """One load run, with the mean batch size and where the machine's CPU time went: the service's
    CPU seconds per answered image and the load generator's (this process) per request sent."""
    before, client_before = service_totals(base, model), time.process_time()
    run: LoadRun = asyncio.run(load(target))
    client_cpu = time.process_time() - client_before
    images, batches, server_cpu = (a - b for a, b in zip(service_totals(base, model), before))
    summary = run.summary()
    return summary | {"mean_batch": images / batches if batches else None,
                      "server_cpu_per_image": server_cpu / summary["answered"] if summary["answered"] else None,
                      "client_cpu_per_request": client_cpu / summary["sent"] if summary["sent"] else None,
                      "cpu_busy_share": (server_cpu + client_cpu) / (run.elapsed * (os.cpu_count() or 1))}


def _repeated(base: str, target: Target, model: str, load, repeats: int, **level) -> dict:
    runs = [_measure(base, target, model, load) for _ in range(repeats)]
    row = dict(level)
    for key in ("throughput", "p50", "p90", "p99", "rejected_share", "mean_batch", "server_cpu_per_image",
                "client_cpu_per_request", "cpu_busy_share"):
        values = [r[key] for r in runs if r[key] is not None and r[key] == r[key]]
        row[key] = Spread.of(values).to_dict() if values else None
    row["errors"] = sum(r["errors"] for r in runs)
    log.info("served %s: %.1f images/s, p99 %s", level, row["throughput"]["median"],
             row["p99"] and f"{row['p99']['median']:.3f} s")
    return row


def served_sweep(bundle_dir: Path, model: str, uploads: list[bytes], plan: ServePlan, threads: int,
                 rates: tuple[float, ...] | None = None) -> dict:
    """Closed-loop sweep, then open-loop runs at ``rates`` (default: ``plan.rate_fractions`` of the
    closed-loop peak), against a service with batches of at most ``plan.max_batch_size`` images."""
    with running_service(bundle_dir, plan.max_batch_size, plan, threads) as base:
        target = Target(base, model, uploads)
        asyncio.run(closed_loop(target, max(plan.concurrency), min(plan.duration, 5.0)))  # warm-up
        closed = [_repeated(base, target, model, lambda t, c=c: closed_loop(t, c, plan.duration), plan.repeats,
                            clients=c) for c in plan.concurrency]
        saturation = max(row["throughput"]["median"] for row in closed)
        rates = rates or tuple(f * saturation for f in plan.rate_fractions)
        opened = [_repeated(base, target, model, lambda t, r=r: open_loop(t, r, plan.duration), plan.repeats,
                            rate=r) for r in rates]
    return {"max_batch_size": plan.max_batch_size, "max_batch_wait": plan.max_batch_wait,
            "saturation_throughput": saturation, "closed_loop": closed, "open_loop": opened}
