"""The one place that calls the evaluation harness (``training.evaluation``), behind POST /evaluate.

``run(runtime, config, progress) -> dict``: ``config`` is the validated request body, ``progress``
takes a fraction in [0, 1] and is where the job yields to live traffic.
"""
from __future__ import annotations

from collections.abc import Callable

from service.engine import ModelRuntime


def run(runtime: ModelRuntime, config: dict, progress: Callable[[float], None]) -> dict:
    """Run the benchmark on ``runtime``'s bundle with ``config``; returns the harness's JSON-able results."""
    from training.evaluation import run_evaluation  # imported only when a job runs

    return run_evaluation({**config, "bundle": str(runtime.bundle.path)}, progress_callback=progress)
