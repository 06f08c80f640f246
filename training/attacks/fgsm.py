"""The one-step grey-box attacks on the classifier alone: FGSM (eq. 2), R-FGSM, and the random-noise
baseline they are measured against (eq. 1).

Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon (l_inf) and [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from apudae.training.attacks.base import Attack, AttackTarget, input_gradient


def _cross_entropy(target: AttackTarget, y: torch.Tensor):
    return lambda adv: F.cross_entropy(target.classifier(adv), y, reduction="none")


@dataclass
class RandomNoise(Attack):
    """eq. 1: X + U(-eps, eps) per pixel."""

    name = "random"

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.project(x + self.uniform_noise(target, x, self.epsilon), x)


@dataclass
class FGSM(Attack):
    """eq. 2: X + eps * sign(dJ/dX) (Goodfellow et al. 2014)."""

    name = "fgsm"

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.project(x + self.epsilon * input_gradient(_cross_entropy(target, y), x).sign(), x)


@dataclass
class RFGSM(Attack):
    """R-FGSM (Tramer et al. 2018): X' = X + a * sign(N(0, I)), then X' + (eps - a) * sign(dJ/dX'), a = eps/2."""

    name = "r-fgsm"

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = self.epsilon / 2
        start = (x + a * self.uniform_noise(target, x, 1.0).sign()).clamp(0, 1)
        grad = input_gradient(_cross_entropy(target, y), start)
        return self.project(start + (self.epsilon - a) * grad.sign(), x)
