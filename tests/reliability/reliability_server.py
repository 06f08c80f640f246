"""A real ``apudae serve`` process on a loopback port for the reliability tests.

``serve(models_dir, workdir, **settings)`` starts it with ``--<setting> value`` options, waits
(bounded) until /readyz answers 200, yields a :class:`Served`, and stops it with SIGTERM.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from apudae.training.bench.served import _wait_ready as wait_ready

REPO = Path(__file__).resolve().parents[2]
START_WAIT = 120.0  # seconds: importing torch and warming up on a busy 2-core machine
STOP_WAIT = 60.0


@dataclass
class Served:
    """The running service: its URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def rss_bytes(self) -> int:
        """The process's resident memory (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")

    def terminate(self) -> float:
        """SIGTERM, then wait (bounded) for the exit; returns the seconds it took."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"apudae serve did not exit within {STOP_WAIT} s of SIGTERM")
        return time.monotonic() - started


def metric_samples(metrics: str, name: str, **labels: str) -> list[tuple[dict, float]]:
    """(labels, value) of the Prometheus exposition's samples called ``name`` whose labels include ``labels``."""
    return [(s.labels, s.value) for family in text_string_to_metric_families(metrics) for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(models_dir: Path, workdir: Path, **settings) -> Iterator[Served]:
    """``apudae serve`` on the CPU and a free loopback port; evaluation results and data under ``workdir``."""
    port = _free_port()
    options = {"model_dir": models_dir, "device": "cpu", "host": "127.0.0.1", "port": port,
               "eval_dir": workdir / "evaluations", **settings}
    args = [a for name, value in options.items() for a in ("--" + name.replace("_", "-"), str(value))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "APUDAE_DATA_DIR": str(workdir / "no-data")}
    log = workdir / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "apudae.service.cli", "serve", *args], cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    served = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(served.url, process, START_WAIT)  # raises when the process exits first; see its log
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
