"""The paper's counter-attacks on the defence (Table 5): BIM steps (eq. 3) with a defence-aware objective.

Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon and [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from apudae.models.dae import reconstruction_error
from apudae.training.attacks.base import ADAPTIVE, Attack, AttackTarget
from apudae.training.attacks.pgd import BIM, pgd_linf

COUNTER_B_BETAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)  # beta of eq. 15 swept; the worst is reported


@dataclass
class CounterA(BIM):
    """eq. 14: BIM through classifier(DAE(X)), the DAE end to end standing in for the purification loop."""

    name, threat_model = "counter-a", ADAPTIVE

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd_linf(lambda a: target.classifier(target.dae(a)), x, y, self.epsilon, self.alpha, self.steps,
                        random_start=False)


@dataclass
class CounterB(BIM):
    """eq. 15: BIM ascending J(classifier(X), y) - beta * dist(X, DAE(X)) (eq. 7, mean over pixels).

    The paper's text asks for adversaries with *less* reconstruction error (so the purifier leaves them
    alone); eq. 15 prints "+ beta"; we follow the text. The harness sweeps beta and reports the worst.
    """

    name, threat_model = "counter-b", ADAPTIVE

    beta: float = 1.0

    @classmethod
    def build(cls, epsilon: float, steps: int | None = None, eot: int | None = None,
              reason: str = "", alpha: float | None = None) -> list[Attack]:
        """One attack per beta of ``COUNTER_B_BETAS``, each with step ``alpha`` (eps / 10 when None)."""
        return [cls(epsilon, alpha=alpha, beta=beta) for beta in COUNTER_B_BETAS]

    def __post_init__(self):
        super().__post_init__()
        self.name = f"{type(self).name}(beta={self.beta:g})"  # each beta is its own row of the report

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def objective(adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            ce = F.cross_entropy(target.classifier(adv), labels, reduction="none")
            return (ce - self.beta * reconstruction_error(target.dae, adv)).sum()

        return pgd_linf(None, x, y, self.epsilon, self.alpha, self.steps, random_start=False, loss=objective)
