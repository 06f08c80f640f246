"""End to end: `apudae serve` on a loopback port, a real Prometheus scraping it with our rules,
images sent over HTTP, and the reconstruction-error series found through Prometheus' query API."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service_fixtures import digit_png

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules" / "apudae.yml"
WAIT = 60.0  # seconds: bound on every polling loop

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus not installed (Debian package 'prometheus'; .ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(check, what: str, process: subprocess.Popen | None = None):
    """Call ``check`` until it returns something truthy, at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}; see its log in the test's tmp_path")
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {WAIT} s")


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture
def served(tiny_models_dir, tmp_path) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """`apudae serve` on the tiny bundle, ready; yields (base URL, process, its log file)."""
    port = free_port()
    env = {**os.environ, "APUDAE_EVAL_DIR": str(tmp_path / "evaluations"), "APUDAE_LOG_LEVEL": "info"}
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "apudae.service.cli", "serve", "--model-dir", str(tiny_models_dir), "--host", "127.0.0.1",
             "--port", str(port), "--device", "cpu", "--shutdown-grace", "10"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, "apudae serve ready", process)
        yield url, process, tmp_path / "serve.log"
    finally:
        stop(process)


@pytest.fixture
def prometheus(served, tmp_path) -> Iterator[str]:
    """A Prometheus scraping the service every second with deploy/'s rules; yields its URL."""
    target = served[0].removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: apudae
    static_configs: [{{targets: ["{target}"]}}]
""")
    port = free_port()
    with (tmp_path / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, "prometheus ready", process)
        yield url
    finally:
        stop(process)


def query(prometheus_url: str, promql: str) -> list[dict]:
    answer = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_reconstruction_error_reaches_prometheus(served, prometheus):
    url = served[0]
    files = [("files", (f"{i}.png", digit_png(i), "image/png")) for i in range(3)]
    assert httpx.post(f"{url}/score", files=files, timeout=30).status_code == 200
    assert httpx.post(f"{url}/purify", files=files[:1], timeout=30).status_code == 200

    series = poll(lambda: query(prometheus, 'apudae_input_reconstruction_error_count{model="tiny"} >= 4'),
                  "reconstruction-error count in Prometheus")
    assert series[0]["metric"]["job"] == "apudae"
    buckets = query(prometheus, 'apudae_input_reconstruction_error_bucket{model="tiny"}')
    assert len(buckets) == 26  # 25 calibration edges + Inf
    assert query(prometheus, 'apudae_calibration_error_mean{model="tiny"}')
    poll(lambda: query(prometheus, 'model:apudae_calibration_error_stddev:max{model="tiny"}'), "recording rule")


def test_sigterm_drains_and_exits_cleanly(served):
    url, process, log_file = served
    assert httpx.post(f"{url}/score", files=[("files", ("a.png", digit_png(), "image/png"))], timeout=30).status_code == 200
    assert stop(process) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    log = log_file.read_text()
    assert "apudae.service.state: stopped" in log and "Traceback" not in log
