"""Admin /evaluate: the bearer token, jobs one at a time, progress, persistence across restarts, failures."""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import asdict

import pytest
from fastapi.testclient import TestClient

from apudae.service.evaluation import harness
from apudae.service.evaluation.jobs import EvaluationJobs, Job
from apudae.service.main import create_app
from apudae.service.metrics import ServiceMetrics
from apudae.training.evaluation.config import EvaluationConfig
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


def _cut_off_job(eval_dir, model: str, seed: int, created: float) -> str:
    """Write a job as a service killed half way through it leaves it (running, progress 0.5); its id."""
    config = EvaluationConfig(bundle="as stored", samples=10, seed=seed).to_dict()
    job = Job(uuid.uuid4().hex, model, config, status="running", progress=0.5, created=created, started=created)
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / f"{job.id}.json").write_text(json.dumps(asdict(job)))
    return job.id


def test_results_survive_a_restart_and_a_cut_off_job_resumes(make_settings, admin, fake_harness):
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        done = client.post("/evaluate", json={"samples": 10, "seed": 3}, headers=admin).json()["id"]
        wait_for(client, admin, done)
    cut_off = _cut_off_job(settings.eval_dir, "tiny", seed=7, created=time.time())
    with TestClient(create_app(settings)) as client:
        assert client.get(f"/evaluate/{done}", headers=admin).json()["results"]["seed"] == 3
        job = wait_for(client, admin, cut_off)
    # the harness ran the stored settings again in the job's own directory, where its checkpoint is
    assert job["status"] == "succeeded" and job["results"]["seed"] == 7 and job["results"]["out"].endswith(cut_off)


def test_a_cut_off_job_that_cannot_resume_is_marked_with_the_reason(make_settings, admin, fake_harness):
    settings = make_settings()
    gone = _cut_off_job(settings.eval_dir, "a-model-no-longer-served", seed=1, created=1.0)
    first = _cut_off_job(settings.eval_dir, "tiny", seed=2, created=2.0)
    second = _cut_off_job(settings.eval_dir, "tiny", seed=3, created=3.0)  # one job at a time: cannot both run
    with TestClient(create_app(settings)) as client:
        jobs = {job_id: wait_for(client, admin, job_id) for job_id in (gone, first, second)}
    assert jobs[gone]["status"] == "interrupted" and "no longer served" in jobs[gone]["error"]
    assert jobs[first]["status"] == "succeeded"
    assert jobs[second]["status"] == "interrupted" and first in jobs[second]["error"]


def test_a_job_stopped_by_a_shutdown_waits_queued_and_finishes_at_the_next_start(tmp_path):
    idle, halfway, gate = threading.Event(), threading.Event(), threading.Event()
    idle.set()

    def task(out, progress):
        progress(0.5)
        halfway.set()
        assert gate.wait(WAIT)
        progress(0.75)  # the harness reports a batch once it is saved; the shutdown is noticed here
        return {"finished": True}

    jobs = EvaluationJobs(tmp_path, idle, ServiceMetrics())
    job = jobs.start("tiny", {}, task)
    assert halfway.wait(WAIT)
    jobs.stop(timeout=0)
    gate.set()
    jobs.stop(timeout=WAIT)
    stored = json.loads((tmp_path / f"{job.id}.json").read_text())
    assert (stored["status"], stored["progress"], stored["finished"]) == ("queued", 0.75, None)

    again = EvaluationJobs(tmp_path, idle, ServiceMetrics())
    again.resume(lambda cut_off: task)
    deadline = time.monotonic() + WAIT
    while again.get(job.id).status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert again.get(job.id).results == {"finished": True}
