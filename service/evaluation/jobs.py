"""Evaluation jobs: one at a time, persisted as JSON, run below live traffic.

Each job is ``<eval_dir>/<id>.json``, rewritten atomically at every change, so a restart loses
no results. A job that was queued or running when the service stopped (shut down or killed) is
taken up again on the next start (``resume``) and continues from the last batch the harness
saved in its directory; only one whose model is no longer served is marked ``interrupted``,
with the reason. The job thread yields to live traffic: at every progress
report it waits until the batcher is idle (nothing queued or running), so a job never delays
a request by more than one of its own steps.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from apudae.service.metrics import ServiceMetrics

log = logging.getLogger(__name__)
ACTIVE = ("queued", "running")
Progress = Callable[[float], None]
Task = Callable[[Path, Progress], dict]
"""A job's work: (its output directory, progress(fraction)) -> JSON-able results."""


class JobBusy(RuntimeError):
    """Another job is queued or running."""

    def __init__(self, job_id: str):
        super().__init__(f"evaluation job {job_id} is still running; one job runs at a time — poll "
                         f"GET /evaluate/{job_id} and start the next one when it has finished")
        self.job_id = job_id


class _Stopped(Exception):
    """The service is shutting down; the job stops at its next progress report, to resume at the next start."""


@dataclass
class Job:
    """One evaluation job as stored on disk and returned by GET /evaluate/{id}."""

    id: str
    model: str
    config: dict
    status: str = "queued"  # queued, running, succeeded, failed, interrupted
    progress: float = 0.0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    results: dict | None = None
    error: str | None = None


class EvaluationJobs:
    """The job store and its single worker thread."""

    def __init__(self, directory: Path, idle: threading.Event, metrics: ServiceMetrics):
        """``idle`` is set while live traffic leaves the device free (``Batcher.idle``)."""
        self.directory, self.idle, self.metrics = directory, idle, metrics
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs = {job.id: job for job in self._load()}

    def _load(self) -> list[Job]:
        jobs = []
        for file in sorted(self.directory.glob("*.json")):
            try:
                jobs.append(Job(**json.loads(file.read_text())))
            except (OSError, ValueError, TypeError) as err:
                log.error("evaluation job file %s skipped: %s", file, err)
        return jobs

    def _save(self, job: Job) -> None:
        tmp = self.directory / f".{job.id}.tmp"
        tmp.write_text(json.dumps(asdict(job), indent=1))
        os.replace(tmp, self.directory / f"{job.id}.json")

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda job: job.created)

    def start(self, model: str, config: dict, task: Task) -> Job:
        """Start ``task`` as a job on ``model`` (``config`` is recorded); raises JobBusy while one is active."""
        with self._lock:
            active = next((job for job in self._jobs.values() if job.status in ACTIVE), None)
            if active is not None:
                raise JobBusy(active.id)
            job = Job(uuid.uuid4().hex, model, config)
            self._jobs[job.id] = job
            self._launch(job, task)
        return job

    def resume(self, task_for: Callable[[Job], Task]) -> None:
        """Take up the jobs the last run of the service left queued or running, oldest first, one at a time
        as ever: the first whose task ``task_for(job)`` can rebuild runs again (the harness continues it from
        its checkpoint); a job it cannot rebuild (ValueError: say why) and any further one are marked
        interrupted with the reason."""
        resumed: Job | None = None
        with self._lock:
            for job in sorted((j for j in self._jobs.values() if j.status in ACTIVE), key=lambda j: j.created):
                try:
                    task = task_for(job)
                except ValueError as err:
                    self._interrupt(job, f"{err}; start it again")
                    continue
                if resumed is not None:
                    self._interrupt(job, f"job {resumed.id} was resumed first; start this one again")
                    continue
                resumed, job.status = job, "queued"
                log.info("evaluation job %s resumes at %.0f%%", job.id, 100 * job.progress)
                self._launch(job, task)

    def _interrupt(self, job: Job, reason: str) -> None:
        job.status, job.error, job.finished = "interrupted", reason, time.time()
        self._save(job)
        self.metrics.evaluation_jobs.labels(job.status).inc()

    def _launch(self, job: Job, task: Task) -> None:
        self._save(job)
        self._thread = threading.Thread(target=self._run, args=(job, task), name=f"evaluation-{job.id[:8]}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask a running job to stop at its next progress report; it is left queued, to resume at the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _yield_to_traffic(self) -> None:
        while not self.idle.wait(timeout=0.2):
            if self._stop.is_set():
                raise _Stopped
        if self._stop.is_set():
            raise _Stopped

    def _run(self, job: Job, task: Task) -> None:
        def progress(fraction: float) -> None:
            job.progress = min(max(float(fraction), 0.0), 1.0)
            self._save(job)
            self._yield_to_traffic()

        job.status, job.started = "running", job.started or time.time()
        self._save(job)
        try:
            self._yield_to_traffic()
            job.results = task(self.directory / job.id, progress)
            job.status, job.progress = "succeeded", 1.0
        except _Stopped:
            job.status = "queued"
            self._save(job)
            log.info("evaluation job %s stopped at %.0f%%; it resumes at the next start", job.id, 100 * job.progress)
            return
        except Exception as err:  # a failing job must never take serving down; its error is kept
            log.exception("evaluation job %s failed", job.id)
            job.status, job.error = "failed", f"{type(err).__name__}: {err}"
        job.finished = time.time()
        self._save(job)
        self.metrics.evaluation_jobs.labels(job.status).inc()
