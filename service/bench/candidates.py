"""Candidate optimisations of the bare purification step, measured before anyone adopts them.

Each candidate is a (memory layout, precision) pair applied to a copy of the DAE: NCHW or channels_last
(NHWC, the layout oneDNN's convolutions prefer), fp32 or bf16 autocast (AVX512-BF16 / AMX on CPU,
tensor cores on GPU). The figure is the bare step (forward + input gradient) per batch size, as in
``offline.floor_sweep``, plus the largest pixel difference of the step's gradient sign against fp32 NCHW
(the sign is what the purifier's "sign" step rule uses).
"""
from __future__ import annotations

import contextlib
import copy
import logging

import torch

from service.bench.flops import dae_step
from service.bench.offline import SweepPlan, timed

log = logging.getLogger(__name__)
CANDIDATES = (("nchw", "fp32"), ("channels_last", "fp32"), ("nchw", "bf16"), ("channels_last", "bf16"))


def _layout(dae: torch.nn.Module, images: torch.Tensor, layout: str) -> tuple[torch.nn.Module, torch.Tensor]:
    if layout == "nchw":
        return dae, images
    fmt = torch.channels_last
    return copy.deepcopy(dae).to(memory_format=fmt), images.contiguous(memory_format=fmt)


def _precision(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def candidate_sweep(dae: torch.nn.Module, images: torch.Tensor, plan: SweepPlan, batch_sizes: tuple[int, ...]) -> list[dict]:
    """Seconds per bare step for every candidate and batch size; ``sign_agreement``: share of pixels whose
    gradient sign matches fp32 NCHW."""
    rows = []
    for batch in batch_sizes:
        x = images[torch.arange(batch) % images.shape[0]].to(plan.device)
        reference = dae_step(dae, x).sign()
        for layout, precision in CANDIDATES:
            model, inputs = _layout(dae, x, layout)
            with _precision(precision, plan.device):
                seconds = timed(lambda: dae_step(model, inputs), plan)
                agreement = (dae_step(model, inputs).sign() == reference).float().mean().item()
            rows.append({"batch": batch, "layout": layout, "precision": precision, "seconds": seconds.to_dict(),
                         "sign_agreement": agreement})
            log.info("candidate %s/%s b=%d: %.4f s", layout, precision, batch, seconds.median)
    return rows
