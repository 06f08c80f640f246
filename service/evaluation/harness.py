"""The one place that calls the evaluation harness (``training.evaluation``), behind POST /evaluate.

``build_config`` turns a request into the harness's ``EvaluationConfig`` (raising ValueError for
bad values, so the route answers 422 before a job starts); ``run`` runs it, continuing from the
checkpoint in the job's directory when a restart cut it off; ``stored_config`` rebuilds a job's
config from its record for that. The harness is
imported only here and only when a job is requested, so serving never pays for it.
"""
from __future__ import annotations

from pathlib import Path

from apudae.service.engine import ModelRuntime
from apudae.service.evaluation.jobs import Progress


def build_config(runtime: ModelRuntime, request: dict, device: str):
    """An ``EvaluationConfig`` on ``runtime``'s bundle from the request's fields (model excluded)."""
    from apudae.training.evaluation.config import EvaluationConfig

    fields = {k: v for k, v in request.items() if v is not None}
    for name in ("attacks", "epsilons", "compare"):
        if name in fields:
            fields[name] = tuple(fields[name])
    return EvaluationConfig(bundle=str(runtime.bundle.path), device=device, **fields)


def stored_config(runtime: ModelRuntime, record: dict, device: str):
    """The ``EvaluationConfig`` of a stored job (``Job.config``, its ``to_dict()``, made by ``build_config``
    from a request, so no field it relies on is None) on ``runtime``'s bundle and ``device`` (the harness
    refuses to resume a checkpoint made on another device). Raises ValueError when the record no longer
    makes a valid config."""
    try:
        return build_config(runtime, {k: v for k, v in record.items() if k not in ("bundle", "device")}, device)
    except TypeError as err:  # a field this version does not know
        raise ValueError(f"the stored job's settings do not fit this version: {err}") from None


def run(config, out: Path, progress: Progress) -> dict:
    """Run ``config``, writing its report and plots under ``out`` (the job's own directory) and continuing
    from the harness's checkpoint there when a restart cut the job off; returns the harness's summary."""
    from dataclasses import replace

    from apudae.training.evaluation.harness import run_evaluation

    return run_evaluation(replace(config, out=str(out)), resume=True,
                          progress_callback=lambda done, total: progress(done / total if total else 0.0))
