"""Admin /evaluate: the bearer token, jobs one at a time, progress, persistence across restarts, failures."""
from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from service.evaluation import harness
from service.evaluation.jobs import EvaluationJobs
from service.main import create_app
from service.metrics import ServiceMetrics
from service_fixtures import admin, client, digit_png, make_settings  # noqa: F401 (pytest fixtures)

WAIT = 30.0  # seconds: bound on polling loops


def wait_for(client, admin, job_id: str, statuses=("succeeded", "failed", "interrupted")) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        job = client.get(f"/evaluate/{job_id}", headers=admin).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {job['status']} after {WAIT} s")


@pytest.fixture
def fake_harness(monkeypatch):
    """Replace the harness run by one that reports progress twice and returns its config's seed."""
    gate = threading.Event()
    gate.set()

    def run(config, out, progress):
        progress(0.5)
        assert gate.wait(WAIT)
        progress(1.0)
        if config.seed == 13:
            raise RuntimeError("simulated harness crash")
        return {"seed": config.seed, "out": str(out)}
    monkeypatch.setattr(harness, "run", run)
    return gate


def test_admin_routes_need_the_token(client, admin):
    assert client.get("/evaluate").status_code == 401
    wrong = client.get("/evaluate", headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/evaluate", headers=admin).status_code == 200


def test_admin_routes_are_disabled_without_a_token(make_settings, admin):
    with TestClient(create_app(make_settings(admin_token=None))) as client:
        answer = client.post("/evaluate", json={}, headers=admin)
    assert answer.status_code == 403 and "APUDAE_ADMIN_TOKEN" in answer.json()["detail"]


def test_job_runs_and_reports_results(client, admin, fake_harness):
    answer = client.post("/evaluate", json={"samples": 10, "seed": 5, "attacks": ["fgsm"]}, headers=admin)
    assert answer.status_code == 202, answer.text
    job = wait_for(client, admin, answer.json()["id"])
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert job["results"]["seed"] == 5 and job["results"]["out"].endswith(job["id"])
    assert job["config"]["samples"] == 10 and job["config"]["attacks"] == ["fgsm"]


def test_one_job_at_a_time(client, admin, fake_harness):
    fake_harness.clear()
    first = client.post("/evaluate", json={"samples": 10}, headers=admin).json()
    second = client.post("/evaluate", json={"samples": 10}, headers=admin)
    assert second.status_code == 409 and first["id"] in second.json()["detail"]
    fake_harness.set()
    assert wait_for(client, admin, first["id"])["status"] == "succeeded"


def test_a_crashing_job_is_visible_and_serving_goes_on(client, admin, fake_harness):
    job_id = client.post("/evaluate", json={"samples": 10, "seed": 13}, headers=admin).json()["id"]
    job = wait_for(client, admin, job_id)
    assert job["status"] == "failed" and "simulated harness crash" in job["error"]
    assert client.post("/score", files=[("files", ("a.png", digit_png(), "image/png"))]).status_code == 200
    assert 'apudae_evaluation_jobs_total{status="failed"} 1.0' in client.get("/metrics").text


def test_the_real_harness_failing_on_missing_data_fails_the_job_only(client, admin, monkeypatch, tmp_path):
    monkeypatch.setenv("APUDAE_DATA_DIR", str(tmp_path / "no-data"))
    job_id = client.post("/evaluate", json={"samples": 4, "attacks": ["fgsm"]}, headers=admin).json()["id"]
    job = wait_for(client, admin, job_id)
    assert job["status"] == "failed" and job["error"]
    assert client.get("/readyz").status_code == 200


def test_bad_requests_are_refused_before_a_job_starts(client, admin):
    assert client.post("/evaluate", json={"samples": 10**6}, headers=admin).status_code == 422
    assert client.post("/evaluate", json={"attacks": ["nope"]}, headers=admin).status_code == 422
    refused = client.post("/evaluate", json={"compare": ["A", "Q"]}, headers=admin)
    assert refused.status_code == 422 and "unknown variant 'Q'" in refused.json()["detail"]
    refused = client.post("/evaluate", json={"compare": ["A:n=-1"]}, headers=admin)
    assert refused.status_code == 422 and "n, alpha, gamma and rotation must be >= 0" in refused.json()["detail"]
    refused = client.post("/evaluate", json={"attacks": ["pgd-eot"], "adaptive_steps": 5}, headers=admin)
    assert refused.status_code == 422 and "reduced_reason" in refused.json()["detail"]
    assert client.post("/evaluate", json={"bundle": "/etc"}, headers=admin).status_code == 422
    assert client.post("/evaluate", json={"model": "nope"}, headers=admin).status_code == 404
    assert client.get("/evaluate/" + "0" * 32, headers=admin).status_code == 404
    assert client.get("/evaluate/../../etc", headers=admin).status_code in (404, 422)


def test_results_survive_a_restart_and_interrupted_jobs_are_marked(make_settings, admin, fake_harness):
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        done = client.post("/evaluate", json={"samples": 10, "seed": 3}, headers=admin).json()["id"]
        wait_for(client, admin, done)
    jobs = EvaluationJobs(settings.eval_dir, threading.Event(), ServiceMetrics())
    fake_harness.clear()
    running = jobs.start("tiny", {"samples": 1}, lambda out, progress: fake_harness.wait(WAIT) and {})
    # a new service on the same directory, while the old store still shows the job as running
    with TestClient(create_app(settings)) as client:
        assert client.get(f"/evaluate/{done}", headers=admin).json()["results"]["seed"] == 3
        assert client.get(f"/evaluate/{running.id}", headers=admin).json()["status"] == "interrupted"
    fake_harness.set()
    jobs.stop()
