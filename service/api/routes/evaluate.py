"""Admin: POST /evaluate starts a benchmark job (202); GET /evaluate/{id} reports it."""
from __future__ import annotations

import asyncio
from dataclasses import asdict
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from apudae.service.api.deps import StateDep, get_model, record_model, require_admin
from apudae.service.evaluation import harness
from apudae.service.evaluation.jobs import EvaluationJobs, JobBusy

router = APIRouter(prefix="/evaluate", tags=["admin"], dependencies=[Depends(require_admin)])
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the id POST /evaluate returned")]


class EvaluateIn(BaseModel):
    """A benchmark request (the options of ``apudae evaluate``); ``samples`` is capped by
    APUDAE_EVAL_MAX_SAMPLES. Omitted fields take the harness's defaults."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="bundle name; default: the default model")
    samples: int = Field(100, gt=0, description="test images (a seeded random subset)")
    seed: int = Field(0, ge=0)
    variant: str | None = Field(None, description="purification variant under test; default: the bundle's")
    compare: list[str] | None = Field(None, description="further variants on the same adversaries (Table 3); "
                                       "one may carry its own settings, e.g. \"A:n=12\"")
    purify: dict[str, float | int | str] | None = Field(None, description="PurifySettings overrides (n, alpha, ...)")
    attacks: list[str] | None = Field(None, description="attack names (training.attacks.ATTACKS)")
    epsilons: list[float] | None = Field(None, description="l_inf budgets in [0, 1]")
    adaptive_steps: int | None = Field(None, gt=0, le=1000)
    adaptive_eot: int | None = Field(None, gt=0, le=100)
    reduced_reason: str | None = Field(None, max_length=500)


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


def _jobs(state: StateDep) -> EvaluationJobs:
    if state.jobs is None:
        raise HTTPException(503, "the service is still starting; retry when GET /readyz answers 200")
    return state.jobs


@router.post("", status_code=202, response_model=JobOut, responses={409: {"description": "a job is running"}})
async def start_evaluation(request: Request, state: StateDep, body: EvaluateIn) -> JobOut:
    """Start a benchmark job; poll GET /evaluate/{id}. 409 while another job runs."""
    limit = state.settings.eval_max_samples
    if body.samples > limit:
        raise HTTPException(422, f"samples must be at most {limit} (APUDAE_EVAL_MAX_SAMPLES)")
    runtime = record_model(request, get_model(state, body.model))
    try:
        config = await asyncio.to_thread(harness.build_config, runtime, body.model_dump(exclude={"model"}),
                                         state.settings.device)
        job = _jobs(state).start(runtime.name, config.to_dict(), partial(harness.run, config))
    except ValueError as err:
        raise HTTPException(422, f"invalid evaluation request: {err}") from None
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
