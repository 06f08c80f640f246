"""The one place that calls the evaluation harness (``training.evaluation``), behind POST /evaluate.

``build_config`` turns a request into the harness's ``EvaluationConfig`` (raising ValueError for
bad values, so the route answers 422 before a job starts); ``run`` runs it. The harness is
imported only here and only when a job is requested, so serving never pays for it.
"""
from __future__ import annotations

from pathlib import Path

from service.engine import ModelRuntime
from service.evaluation.jobs import Progress


def build_config(runtime: ModelRuntime, request: dict, device: str):
    """An ``EvaluationConfig`` on ``runtime``'s bundle from the request's fields (model excluded)."""
    from training.evaluation.config import EvaluationConfig

    fields = {k: v for k, v in request.items() if v is not None}
    for name in ("attacks", "epsilons", "compare"):
        if name in fields:
            fields[name] = tuple(fields[name])
    return EvaluationConfig(bundle=str(runtime.bundle.path), device=device, **fields)


def run(config, out: Path, progress: Progress) -> dict:
    """Run ``config``, writing its report and plots under ``out``; returns the harness's summary."""
    from dataclasses import replace

    from training.evaluation.harness import run_evaluation

    return run_evaluation(replace(config, out=str(out)),
                          progress_callback=lambda done, total: progress(done / total if total else 0.0))
