"""Offline engine throughput: the bare DAE step (the floor), the purification loop and the whole engine.

Per batch size b (images cycled from the bench images), in the runtime's precision:
- ``floor``: one DAE forward + input-gradient backward on b images (``flops.dae_step``);
- ``loop``: ``purify`` alone on adversarial images, and its overhead over mean steps x the bare step
  timed beside each call;
- ``engine``: ``ModelRuntime.classify`` (purify + the ONNX classifier, what a served batch runs) on
  clean and on adversarial images.
Times are medians over ``repeats`` calls after one warm-up call, with their spread; mean steps are those
of the timed calls.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from apudae.models.purification import PurifySettings, purify
from apudae.models.purification.variants import PURIFIERS
from apudae.training.bench.flops import dae_step
from apudae.training.bench.inputs import BenchImages, repeat_to
from apudae.training.bench.stats import Spread, time_repeated
from apudae.service.engine import ModelRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPlan:
    """What an offline sweep runs: batch sizes, timed repeats per point, and the torch device."""

    batch_sizes: tuple[int, ...]
    repeats: int
    device: torch.device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device: torch.device):
    """(seconds, result) of one call of ``fn`` on ``device`` (CUDA synchronised)."""
    started = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - started, result


def timed(fn, plan: SweepPlan) -> Spread:
    """Seconds per call of ``fn`` on ``plan``'s device (CUDA synchronised), over ``plan.repeats`` calls."""
    def call() -> None:
        fn()
        _sync(plan.device)
    return time_repeated(call, plan.repeats)


def timed_counts(fn, plan: SweepPlan) -> tuple[Spread, tuple[float, ...]]:
    """``timed`` for an ``fn`` that returns counts of its call (mean steps, ...): the seconds, and each count
    averaged over the timed calls themselves (F/G's fresh noise changes the steps from call to call)."""
    counts: list[tuple[float, ...]] = []
    seconds = timed(lambda: counts.append(fn()), plan)
    timed_calls = counts[-plan.repeats:]  # not the warm-up
    return seconds, tuple(sum(values) / len(timed_calls) for values in zip(*timed_calls))


def _step_counts(results: list, variant: str) -> tuple[float, float]:
    """Of one engine call's results: the mean purification steps per image, and the share of images whose
    error after purification took a second DAE forward (those that moved: a step, or direct's and G's
    output, which always differs from the input)."""
    always = PURIFIERS[variant].always_changes
    steps = [r.purified.steps if r.purified else 0 for r in results]
    moved = [bool(r.purified) and (always or s > 0) for r, s in zip(results, steps)]
    return sum(steps) / len(results), sum(moved) / len(results)


def _point(batch: int, seconds: Spread, **extra) -> dict:
    return {"batch": batch, "seconds": seconds.to_dict(), "images_per_s": seconds.inverse(batch).to_dict(), **extra}


def floor_sweep(runtime: ModelRuntime, images: BenchImages, plan: SweepPlan) -> list[dict]:
    """Seconds of one bare step (DAE forward + input gradient) per batch size, on adversarial images."""
    rows = []
    for batch in plan.batch_sizes:
        x = repeat_to(images.adversarial, batch).to(plan.device)
        with runtime.autocast():
            rows.append(_point(batch, timed(lambda: dae_step(runtime.dae, x), plan)))
        log.info("floor %s b=%d: %.4f s", runtime.name, batch, rows[-1]["seconds"]["median"])
    return rows


def loop_sweep(runtime: ModelRuntime, settings: PurifySettings, images: BenchImages, plan: SweepPlan) -> list[dict]:
    """``purify`` alone on adversarial batches, with its overhead over (its steps x the bare step).

    The bare step is timed right before each ``purify`` call, alternately, and each call's ratio is taken
    against the step timed beside it: the machine's speed can drift over a bench run by as much as the
    overhead being judged, and a floor timed minutes earlier would carry that drift into the
    ratio. ``overhead_ratio`` is the median of the per-call ratios.
    """
    rows = []
    for batch in plan.batch_sizes:
        x = repeat_to(images.adversarial, batch)
        on_device = x.to(plan.device)
        floor_samples, loop_samples, ratios, steps = [], [], [], []
        for call in range(plan.repeats + 1):  # the first pair warms up
            with runtime.autocast():
                floor_seconds, _ = time_call(lambda: dae_step(runtime.dae, on_device), plan.device)
                loop_seconds, mean_steps = time_call(
                    lambda: purify(runtime.dae, x, runtime.calibration, settings).steps.float().mean().item(),
                    plan.device)
            if call:
                floor_samples.append(floor_seconds)
                loop_samples.append(loop_seconds)
                steps.append(mean_steps)
                ratios.append(loop_seconds / (mean_steps * floor_seconds) if mean_steps else float("nan"))
        seconds = Spread.of(loop_samples)
        rows.append(_point(batch, seconds, mean_steps=sum(steps) / len(steps),
                           paired_floor_seconds=Spread.of(floor_samples).to_dict(),
                           overhead_ratio=Spread.of(ratios).median if all(r == r for r in ratios) else None))
        log.info("loop %s/%s b=%d: %.4f s (x%.2f of steps x floor)", runtime.name, settings.variant, batch,
                 seconds.median, rows[-1]["overhead_ratio"] or float("nan"))
    return rows


def engine_sweep(runtime: ModelRuntime, settings: PurifySettings, images: BenchImages, plan: SweepPlan,
                 kinds: tuple[str, ...] = ("adversarial", "clean")) -> list[dict]:
    """Images/s of ``runtime.classify`` with ``settings`` per batch size and input kind."""
    rows = []
    for kind in kinds:
        pool = getattr(images, kind)
        for batch in plan.batch_sizes:
            x = repeat_to(pool, batch)
            seconds, (steps, moved) = timed_counts(
                lambda: _step_counts(runtime.classify(x, settings), settings.variant), plan)
            rows.append(_point(batch, seconds, kind=kind, variant=settings.variant, mean_steps=steps,
                               moved_share=moved))
            log.info("engine %s/%s %s b=%d: %.1f images/s", runtime.name, settings.variant, kind, batch,
                     rows[-1]["images_per_s"]["median"])
    return rows
