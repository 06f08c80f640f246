"""Admin: POST /evaluate starts a benchmark job (202); GET /evaluate/{id} reports it."""
from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from service.api.deps import StateDep, get_model, require_admin
from service.evaluation.jobs import JobBusy

router = APIRouter(prefix="/evaluate", tags=["admin"], dependencies=[Depends(require_admin)])
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the id POST /evaluate returned")]


class EvaluateIn(BaseModel):
    """A benchmark request; ``samples`` is capped by APUDAE_EVAL_MAX_SAMPLES."""

    model: str | None = Field(None, description="bundle name; default: the default model")
    samples: int = Field(100, gt=0, description="test images to attack")
    seed: int = Field(0, ge=0)
    options: dict = Field(default_factory=dict, description="further harness options (attacks, eps, steps...)")


class JobOut(BaseModel):
    id: str
    model: str
    config: dict
    status: str = Field(description="queued, running, succeeded, failed or interrupted")
    progress: float
    created: float
    started: float | None
    finished: float | None
    results: dict | None
    error: str | None


def _jobs(state: StateDep):
    if state.jobs is None:
        raise HTTPException(503, "the service is still starting; retry when GET /readyz answers 200")
    return state.jobs


@router.post("", status_code=202, response_model=JobOut)
async def start_evaluation(state: StateDep, body: EvaluateIn) -> JobOut:
    """Start a job; 409 while another runs."""
    limit = state.settings.eval_max_samples
    if body.samples > limit:
        raise HTTPException(422, f"samples must be at most {limit} (APUDAE_EVAL_MAX_SAMPLES)")
    runtime = get_model(state, body.model)
    try:
        job = _jobs(state).start(runtime, body.model_dump(exclude={"model"}))
    except JobBusy as err:
        raise HTTPException(409, str(err)) from None
    return JobOut(**asdict(job))


@router.get("", response_model=list[JobOut])
async def list_evaluations(state: StateDep) -> list[JobOut]:
    """Every job on disk, oldest first."""
    return [JobOut(**asdict(job)) for job in _jobs(state).all()]


@router.get("/{job_id}", response_model=JobOut)
async def get_evaluation(state: StateDep, job_id: JobId) -> JobOut:
    """Status, progress and (when finished) results or error of one job."""
    job = _jobs(state).get(job_id)
    if job is None:
        raise HTTPException(404, f"no evaluation job {job_id}; GET /evaluate lists them")
    return JobOut(**asdict(job))
