"""Candidate optimisations of the bare purification step, measured before anyone adopts them.

Each candidate is a (memory layout, precision) pair applied to a copy of the DAE: NCHW or channels_last
(NHWC, the layout oneDNN's convolutions prefer), fp32 or bf16 autocast (AVX512-BF16 / AMX on CPU,
tensor cores on GPU). ``candidate_sweep`` times the bare step (forward + input gradient) per batch size,
as ``offline.floor_sweep`` does, with the share of gradient signs equal to fp32 NCHW's (the sign is what
the purifier's "sign" step rule uses); ``applied`` runs the whole engine with a candidate
(``service.bench.engine_candidates``).
"""
from __future__ import annotations

import contextlib
import copy
import logging

import torch

from apudae.training.bench.flops import dae_step
from apudae.training.bench.offline import SweepPlan, timed
from apudae.service.engine import ModelRuntime

log = logging.getLogger(__name__)
CANDIDATES = (("nchw", "fp32"), ("channels_last", "fp32"), ("nchw", "bf16"), ("channels_last", "bf16"))


def laid_out(dae: torch.nn.Module, layout: str) -> torch.nn.Module:
    """A copy of ``dae`` with NCHW ("nchw") or channels_last weights, whatever the layout of ``dae`` (inputs
    may stay NCHW: the convolutions follow the weights' layout)."""
    layout_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    return copy.deepcopy(dae).to(memory_format=layout_format)


def precision_context(precision: str, device: torch.device):
    """bf16 autocast on ``device`` for "bf16", nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def applied(runtime: ModelRuntime, layout: str, precision: str):
    """Run ``runtime`` (the service's engine) with a candidate for the duration of the block: its DAE
    swapped for a re-laid-out copy and its precision for the candidate's; both restored afterwards."""
    original, original_precision = runtime.dae, runtime.precision
    runtime.dae, runtime.precision = laid_out(original, layout), precision
    try:
        yield runtime
    finally:
        runtime.dae, runtime.precision = original, original_precision


def candidate_sweep(dae: torch.nn.Module, images: torch.Tensor, plan: SweepPlan,
                    batch_sizes: tuple[int, ...]) -> list[dict]:
    """Seconds per bare step for every candidate and batch size; ``sign_agreement``: share of pixels whose
    gradient sign matches fp32 NCHW."""
    rows = []
    for batch in batch_sizes:
        x = images[torch.arange(batch) % images.shape[0]].to(plan.device)
        reference = dae_step(dae, x).sign()
        for layout, precision in CANDIDATES:
            model = laid_out(dae, layout)
            with precision_context(precision, plan.device):
                seconds = timed(lambda: dae_step(model, x), plan)
                agreement = (dae_step(model, x).sign() == reference).float().mean().item()
            rows.append({"batch": batch, "layout": layout, "precision": precision, "seconds": seconds.to_dict(),
                         "sign_agreement": agreement})
            log.info("candidate %s/%s b=%d: %.4f s", layout, precision, batch, seconds.median)
    return rows
