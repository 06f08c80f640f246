"""Adaptive attacks that know the detector (models/detector.py) as well as the purifier: each ascends the
cross-entropy of the defended pipeline minus ``weight`` times the detection score's excess over a margin
below the threshold, so that the adversary is misclassified *and* not flagged.

    J(X) - weight * max(0, s(X) - (1 - margin) * t) / t,

s(X) = eq. 7's error of X (the detector's statistic, differentiated exactly: one DAE pass), t = the
detector's threshold at false-positive rate ``fpr`` (default: the largest stored rate, whose threshold is
the lowest, so an adversary under it is under every other), ``margin`` = 0.1 (aim 10 % under t). The
penalty is relative to t, so one weight means the same on every bundle; each weight of ``DETECTOR_WEIGHTS``
is its own row of the report and the worst-case row takes the worst of them.

- ``pgd-eot-detector``: PGD-EOT (exact gradients through the unrolled purification) with this objective;
- ``bpda-eot-detector``: the same through BPDA (identity as the purifier's backward);
- ``counter-b-detector``: counter-attack B's BIM on the bare classifier (eq. 15) with the hinge above in
  place of its linear error term.

Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon and [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from apudae.models.dae import reconstruction_error
from apudae.training.attacks.base import ADAPTIVE, Attack, AttackTarget
from apudae.training.attacks.eot import BPDAEOT, PGDEOT, eot_batch
from apudae.training.attacks.pgd import BIM, pgd_linf

DETECTOR_WEIGHTS = (1.0, 10.0, 100.0)  # weight of the detection term, swept; the worst is reported
MARGIN = 0.1  # aim this fraction of the threshold under it


def detection_penalty(target: AttackTarget, adv: torch.Tensor, fpr: float | None, margin: float) -> torch.Tensor:
    """(B,) max(0, s(adv) - (1 - margin) t) / t, differentiable in adv; ValueError when the defence has no
    detector thresholds. adv: (B, C, H, W) in [0, 1]."""
    detector = target.calibration.detector if target.calibration is not None else None
    if detector is None:
        raise ValueError("the detector-aware attacks need the bundle's detector thresholds; add them with "
                         "`apudae calibrate-detector --bundle <dir>`")
    threshold = detector.threshold(max(detector.rates) if fpr is None else fpr)
    return (reconstruction_error(target.dae, adv) - (1 - margin) * threshold).clamp_min(0) / threshold


class DetectorAware:
    """Mixin of the detector-aware attacks: ``weight``, ``fpr`` and ``margin`` fields, one attack per weight
    of ``DETECTOR_WEIGHTS`` (each its own name), and ``penalty``."""

    weight: float
    fpr: float | None
    margin: float

    @classmethod
    def build(cls, epsilon: float, steps: int | None = None, eot: int | None = None,
              reason: str = "", alpha: float | None = None) -> list[Attack]:
        (base,) = super().build(epsilon, steps, eot, reason, alpha)
        return [replace(base, weight=weight) for weight in DETECTOR_WEIGHTS]

    def __post_init__(self):
        super().__post_init__()
        self.name = f"{type(self).name}(weight={self.weight:g})"  # each weight is its own row of the report

    def penalty(self, target: AttackTarget, adv: torch.Tensor) -> torch.Tensor:
        """(B,) the weighted detection term of ``adv``."""
        return self.weight * detection_penalty(target, adv, self.fpr, self.margin)


@dataclass
class DetectorAwarePGDEOT(DetectorAware, PGDEOT):
    """PGD-EOT on E_r[J(classifier(purify_r(X)))] - weight * the detection hinge."""

    name = "pgd-eot-detector"

    weight: float = DETECTOR_WEIGHTS[0]
    fpr: float | None = None
    margin: float = MARGIN

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def objective(adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            copies, noise = eot_batch(target, adv, self.eot)
            ce = F.cross_entropy(self._logits(target, copies, noise), labels.repeat(self.eot), reduction="none")
            return (ce.view(self.eot, -1).mean(0) - self.penalty(target, adv)).sum()

        return pgd_linf(None, x, y, self.epsilon, self.alpha, self.steps, random_start=True,
                        generator=self.generator_on(target, x), loss=objective)


@dataclass
class DetectorAwareBPDAEOT(DetectorAwarePGDEOT):
    """``pgd-eot-detector`` with BPDA's gradient of the purifier (identity backward); the detection term
    keeps its exact gradient."""

    name = "bpda-eot-detector"
    _logits = BPDAEOT._logits


@dataclass
class DetectorAwareCounterB(DetectorAware, BIM):
    """BIM (eq. 3) ascending J(classifier(X), y) - weight * the detection hinge: counter-attack B (eq. 15)
    with the detector's threshold in place of its linear error term."""

    name, threat_model = "counter-b-detector", ADAPTIVE

    weight: float = DETECTOR_WEIGHTS[0]
    fpr: float | None = None
    margin: float = MARGIN

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def objective(adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            ce = F.cross_entropy(target.classifier(adv), labels, reduction="none")
            return (ce - self.penalty(target, adv)).sum()

        return pgd_linf(None, x, y, self.epsilon, self.alpha, self.steps, random_start=False, loss=objective)
