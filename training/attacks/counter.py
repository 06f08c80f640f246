"""The paper's counter-attacks on the defence (Table 5): BIM steps (eq. 3) with a defence-aware objective.

Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon and [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from apudae.models.purification.base import per_image_error
from apudae.training.attacks.base import ADAPTIVE, AttackTarget
from apudae.training.attacks.classic import BIM
from apudae.training.attacks.pgd import pgd_linf


@dataclass
class CounterA(BIM):
    """eq. 14: BIM through classifier(DAE(X)), the DAE end to end standing in for the purification loop."""

    def __post_init__(self):
        super().__post_init__()
        self.name, self.threat_model = "counter-a", ADAPTIVE

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd_linf(lambda a: target.classifier(target.dae(a)), x, y, self.epsilon, self.alpha, self.steps,
                        random_start=False)


@dataclass
class CounterB(BIM):
    """eq. 15: BIM ascending J(classifier(X), y) - beta * dist(X, DAE(X)) (eq. 7, mean over pixels).

    The paper's text asks for adversaries with *less* reconstruction error (so the purifier leaves them
    alone); eq. 15 prints "+ beta"; we follow the text. The harness sweeps beta and reports the worst.
    """

    beta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        self.name, self.threat_model = f"counter-b(beta={self.beta:g})", ADAPTIVE

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def objective(adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            ce = F.cross_entropy(target.classifier(adv), labels, reduction="none")
            return (ce - self.beta * per_image_error(target.dae, adv)).sum()

        return pgd_linf(None, x, y, self.epsilon, self.alpha, self.steps, random_start=False, loss=objective)
