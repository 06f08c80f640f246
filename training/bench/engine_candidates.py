"""Engine candidates end to end: accuracy on the same clean and PGD images, and throughput.

Candidates (``service.bench.candidates``): the engine as it is (NCHW fp32), a channels_last DAE, and a
channels_last DAE whose purification loop runs under ``torch.autocast(bfloat16)`` (convolutions in bf16
on AVX512-BF16 / AMX CPUs and on GPUs; the ONNX classifier stays fp32), on the bench's clean and PGD
images (``service.bench.inputs``). For the accuracy check the purification noise is seeded (seed 0), so
every candidate sees the same noise and differences come from the arithmetic alone; the timing runs as
the service does, with fresh noise drawn for the whole batch at once.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from apudae.models.purification import PurifySettings
from apudae.training.bench.candidates import applied
from apudae.training.bench.inputs import BenchImages, repeat_to
from apudae.training.bench.offline import SweepPlan, timed
from apudae.service.engine import ModelRuntime

REFERENCE = ("nchw", "fp32")
ENGINE_CANDIDATES = (REFERENCE, ("channels_last", "fp32"), ("channels_last", "bf16"))


def _predict(runtime: ModelRuntime, images: torch.Tensor, settings: PurifySettings, batch: int) -> torch.Tensor:
    labels = []
    for start in range(0, images.shape[0], batch):
        for result in runtime.classify(images[start:start + batch], settings):
            labels.append(max(range(len(result.probabilities)), key=result.probabilities.__getitem__))
    return torch.tensor(labels)


def compare_candidates(runtime: ModelRuntime, settings: PurifySettings, images: BenchImages, batch: int,
                       plan: SweepPlan) -> dict:
    """Per candidate: clean and PGD accuracy, predictions that differ from the reference, images/s."""
    if images.labels is None:
        return {"skipped": "no labelled test data for this bundle"}
    seeded = replace(settings, seed=0)
    timing_batch = repeat_to(images.adversarial, batch)
    report: dict = {"images": int(images.labels.shape[0]), "batch": batch, "settings": repr(seeded),
                    "attack": images.attack, "candidates": []}
    reference: dict[str, torch.Tensor] = {}
    for layout, precision in ENGINE_CANDIDATES:
        row: dict = {"layout": layout, "precision": precision}
        with applied(runtime, layout, precision):
            for kind, x in (("clean", images.clean), ("pgd", images.adversarial)):
                predicted = _predict(runtime, x, seeded, batch)
                reference.setdefault(kind, predicted)
                row[f"{kind}_accuracy"] = (predicted == images.labels).float().mean().item()
                row[f"{kind}_differ"] = int((predicted != reference[kind]).sum())
            # timed as served: fresh batch-drawn noise (seeded noise draws image by image, a cost the service
            # does not pay that would hide the candidates' differences)
            row["images_per_s"] = timed(lambda: runtime.classify(timing_batch, settings), plan).inverse(batch).to_dict()
        report["candidates"].append(row)
    base = report["candidates"][0]
    for row in report["candidates"]:
        row["speedup"] = row["images_per_s"]["median"] / base["images_per_s"]["median"]
        row["pgd_delta_points"] = 100 * (row["pgd_accuracy"] - base["pgd_accuracy"])
        row["clean_delta_points"] = 100 * (row["clean_accuracy"] - base["clean_accuracy"])
    return report
