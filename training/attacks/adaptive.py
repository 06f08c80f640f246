"""Adaptive attacks on the whole purify + classify pipeline, averaged over the defence's randomness (EOT).

- BPDA+EOT (Athalye et al. 2018): forward through the real purifier, backward as the identity.
- PGD-EOT: exact gradients through the unrolled purification loop (``purify_unrolled``); the bar of
  Lee & Kim 2023 is 200 steps with EOT 20.
Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon and [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.purification import purify, purify_unrolled
from training.attacks.base import ADAPTIVE, Attack, AttackTarget
from training.attacks.pgd import pgd_linf

EOT_DRAWS = 20  # the bar of Lee & Kim 2023 for every adaptive attack on a randomised defence


class _PurifyIdentityBackward(torch.autograd.Function):
    """BPDA: forward = the real (non-differentiable) purification, backward = identity."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, target: AttackTarget) -> torch.Tensor:
        return purify(target.dae, x, target.calibration, _fresh_draw(target)).images

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def _fresh_draw(target: AttackTarget):
    """The defence's settings with a new seed at every call, taken from the attack's own generator: EOT
    averages over these draws of the defence's randomness, and the same attack seed repeats them."""
    return replace(target.settings, seed=int(torch.randint(0, 2**62, (1,), generator=target.generator)))


class DefendedClassifier(nn.Module):
    """classifier(purify_unrolled(x)) with log-probabilities averaged over ``eot`` draws of the defence's
    randomness: (B, C, H, W) in [0, 1] -> (B, classes) log-probabilities. Cross-entropy of the average
    equals the average cross-entropy, so its gradient is the EOT gradient."""

    def __init__(self, target: AttackTarget, eot: int = 1):
        super().__init__()
        self.target, self.eot, self.classifier = target, eot, target.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.target
        draws = [F.log_softmax(t.classifier(purify_unrolled(t.dae, x, t.calibration, _fresh_draw(t))), dim=1)
                 for _ in range(self.eot)]
        return torch.stack(draws).mean(0)


@dataclass
class BPDAEOT(Attack):
    """PGD (eq. 3, random start) on E_r[J(classifier(purify_r(X)))] with the identity as purify's backward."""

    steps: int = 200
    eot: int = EOT_DRAWS
    alpha: float | None = None
    reason: str = ""  # why steps/eot are below 200/20, when they are

    def __post_init__(self):
        self.name, self.threat_model, self.attacks_defence = "bpda-eot", ADAPTIVE, True
        if self.alpha is None:
            self.alpha = max(2.5 * self.epsilon / self.steps, self.epsilon / 40)

    def _draw(self, target: AttackTarget, adv: torch.Tensor) -> torch.Tensor:
        return target.classifier(_PurifyIdentityBackward.apply(adv, target))

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def objective(adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return sum(F.cross_entropy(self._draw(target, adv), labels, reduction="sum") for _ in range(self.eot))

        return pgd_linf(None, x, y, self.epsilon, self.alpha, self.steps, random_start=True,
                        generator=self.generator_on(target, x), loss=objective)


@dataclass
class PGDEOT(BPDAEOT):
    """PGD-EOT with the exact gradient of the unrolled purification loop (every step, create_graph)."""

    def __post_init__(self):
        super().__post_init__()
        self.name = "pgd-eot"

    def _draw(self, target: AttackTarget, adv: torch.Tensor) -> torch.Tensor:
        return target.classifier(purify_unrolled(target.dae, adv, target.calibration, _fresh_draw(target)))
