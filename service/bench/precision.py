"""bf16 against fp32 purification: robust and clean accuracy on the same images, and the speed-up.

The DAE's purification loop runs under ``torch.autocast(bfloat16)`` (convolutions in bf16 on AVX512-BF16
/ AMX CPUs and on GPUs; losses and the update in fp32); the ONNX classifier stays fp32. Adversarial
images: grey-box PGD on the classifier (l_inf eps of the data set, ``PGD_STEPS`` steps of eps/8, random
start, seed 0), rounded to 8 bits. Purification noise is seeded (seed 0), so both precisions see the same
noise and every difference comes from the arithmetic.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace

import torch

from models.purification import PurifySettings
from service.bench.inputs import BenchImages, quantize, repeat_to
from service.bench.offline import SweepPlan, timed
from service.engine import ModelRuntime
from training.attacks.pgd import pgd_linf

PGD_STEPS = 20


def _precision_context(name: str, device: torch.device):
    if name == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _predict(runtime: ModelRuntime, images: torch.Tensor, settings: PurifySettings, batch: int) -> torch.Tensor:
    labels = []
    for start in range(0, images.shape[0], batch):
        for result in runtime.classify(images[start:start + batch], settings):
            labels.append(max(range(len(result.probabilities)), key=result.probabilities.__getitem__))
    return torch.tensor(labels)


def compare_precisions(runtime: ModelRuntime, settings: PurifySettings, images: BenchImages, batch: int,
                       plan: SweepPlan) -> dict:
    """Accuracy of fp32 and bf16 purification on clean and PGD images, their disagreements and speed."""
    if images.labels is None:
        return {"skipped": "no labelled test data for this bundle"}
    generator = torch.Generator().manual_seed(0)
    eps = images.epsilon
    attacked = quantize(pgd_linf(runtime.bundle.classifier, images.clean, images.labels, eps, eps / 8, PGD_STEPS,
                                 generator=generator))
    seeded = replace(settings, seed=0)
    timing_batch = repeat_to(attacked, batch)
    report: dict = {"images": int(images.labels.shape[0]), "attack": f"grey-box PGD-{PGD_STEPS}, eps={eps:.4g}, "
                    "step eps/8, random start, seed 0, 8-bit", "settings": repr(seeded), "batch": batch}
    predictions = {}
    for precision in ("fp32", "bf16"):
        with _precision_context(precision, plan.device):
            for kind, x in (("clean", images.clean), ("pgd", attacked)):
                predictions[precision, kind] = _predict(runtime, x, seeded, batch)
                report[f"{precision}_{kind}_accuracy"] = (predictions[precision, kind] == images.labels).float().mean().item()
            seconds = timed(lambda: runtime.classify(timing_batch, seeded), plan)
        report[f"{precision}_images_per_s"] = seconds.inverse(batch).to_dict()
    for kind in ("clean", "pgd"):
        report[f"{kind}_disagreements"] = int((predictions["fp32", kind] != predictions["bf16", kind]).sum())
        report[f"{kind}_accuracy_delta_points"] = 100 * (report[f"bf16_{kind}_accuracy"] - report[f"fp32_{kind}_accuracy"])
    report["bf16_speedup"] = report["bf16_images_per_s"]["median"] / report["fp32_images_per_s"]["median"]
    return report
