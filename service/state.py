"""What one running service holds: settings, metrics, the loaded models, the batcher, the job runner.

Created by the app factory; started and stopped by its lifespan. Routes reach it through
``service.api.deps``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

import torch

from apudae.service.batcher import BatchFn, Batcher, BatchKey
from apudae.service.engine import ModelRuntime, load_models
from apudae.service.evaluation import harness
from apudae.service.evaluation.jobs import EvaluationJobs, Job, Task
from apudae.service.metrics import ServiceMetrics
from apudae.service.settings import Settings

log = logging.getLogger(__name__)
SHIPPED_DEFAULT_MODEL = "mnist"  # the README's default model, used when APUDAE_DEFAULT_MODEL is unset


OPERATIONS: dict[str, Callable[[ModelRuntime, Hashable], BatchFn]] = {
    "purify": lambda runtime, settings: partial(runtime.purify, settings=settings),
    "classify": lambda runtime, settings: partial(runtime.classify, settings=settings),
    "score": lambda runtime, settings: runtime.score,
}
"""Each batch operation's name -> its batch function on a runtime under the batch key's settings."""


class UnknownModel(LookupError):
    """A request named a model the service does not serve (404)."""


class ServiceState:
    """The service's shared state; ``ready`` only once every loadable model is loaded and warm."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.models: dict[str, ModelRuntime] = {}
        self.batcher: Batcher | None = None
        self.jobs: EvaluationJobs | None = None
        self.ready = False
        self.draining = False

    async def start(self) -> None:
        """Load and warm every bundle, then open the batcher and the job runner; raises if nothing loads."""
        settings = self.settings
        batcher = Batcher(settings.max_batch_size, settings.max_batch_wait, settings.max_queue_size, self.metrics)
        self.models = await batcher.on_compute_thread(load_models, settings.model_dir, torch.device(settings.device),
                                                      settings.precision)
        if not self.models:
            raise RuntimeError(f"no model could be loaded from {settings.model_dir}; see the errors above")
        if settings.default_model is not None and settings.default_model not in self.models:
            raise RuntimeError(f"default model {settings.default_model!r} is not among the loaded models "
                               f"({', '.join(self.models)}); fix APUDAE_DEFAULT_MODEL or --default-model")
        for name, runtime in self.models.items():
            self.metrics.set_calibration(name, runtime.calibration)
        self.metrics.models_ready.set(len(self.models))
        self.batcher = batcher
        self.jobs = EvaluationJobs(settings.eval_dir, self.batcher.idle, self.metrics)
        self.jobs.resume(self._cut_off_task)
        self.ready = True
        log.info("ready: serving %s on %s", ", ".join(self.models), settings.device)

    def _cut_off_task(self, job: Job) -> Task:
        """The task of a job the last run of the service left unfinished: its stored settings on its model,
        when that is still served (else ValueError)."""
        runtime = self.models.get(job.model)
        if runtime is None:
            raise ValueError(f"its model {job.model!r} is no longer served")
        return partial(harness.run, harness.stored_config(runtime, job.config, self.settings.device))

    def begin_shutdown(self) -> None:
        """Report not ready at once (called from the signal handler, before connections drain)."""
        self.ready = False
        self.draining = True

    async def stop(self) -> None:
        """Finish accepted requests (up to the shutdown grace), then stop the job runner."""
        self.begin_shutdown()
        if self.batcher is not None:
            await self.batcher.close(self.settings.shutdown_grace)
        if self.jobs is not None:
            await asyncio.to_thread(self.jobs.stop)
        log.info("stopped")

    def model(self, name: str | None) -> ModelRuntime:
        """The runtime called ``name`` (the default model when None); raises UnknownModel."""
        if name is None:
            fallback = SHIPPED_DEFAULT_MODEL if SHIPPED_DEFAULT_MODEL in self.models else next(iter(self.models), None)
            name = self.settings.default_model or fallback
        runtime = self.models.get(name) if name is not None else None
        if runtime is None:
            raise UnknownModel(f"unknown model {name!r}; served models: {', '.join(self.models) or 'none'} "
                               "(GET /models lists them)")
        return runtime

    async def run(self, runtime: ModelRuntime, operation: str, settings: Hashable, images: torch.Tensor) -> list[Any]:
        """Run ``images`` through the batcher under (model, operation, settings) within the deadline; the
        batch function is ``OPERATIONS[operation]`` on ``runtime`` and ``settings``. Raises KeyError for an
        operation not in ``OPERATIONS``."""
        if self.batcher is None:
            raise RuntimeError("the service has not started")
        run = OPERATIONS[operation](runtime, settings)
        deadline = time.monotonic() + self.settings.request_deadline
        return await self.batcher.submit(BatchKey(runtime.name, operation, settings), images, run, deadline)
