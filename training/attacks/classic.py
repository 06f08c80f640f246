"""Grey-box attacks on the classifier alone: Random (eq. 1), FGSM (eq. 2), R-FGSM, BIM and PGD (eq. 3).

Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon (l_inf) and [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from apudae.training.attacks.base import Attack, AttackTarget, input_gradient
from apudae.training.attacks.pgd import pgd_linf


def _cross_entropy(target: AttackTarget, y: torch.Tensor):
    return lambda adv: F.cross_entropy(target.classifier(adv), y, reduction="none")


@dataclass
class RandomNoise(Attack):
    """eq. 1: X + U(-eps, eps) per pixel."""

    def __post_init__(self):
        self.name = "random"

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.project(x + self.uniform_noise(target, x, self.epsilon), x)


@dataclass
class FGSM(Attack):
    """eq. 2: X + eps * sign(dJ/dX) (Goodfellow et al. 2014)."""

    def __post_init__(self):
        self.name = "fgsm"

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.project(x + self.epsilon * input_gradient(_cross_entropy(target, y), x).sign(), x)


@dataclass
class RFGSM(Attack):
    """R-FGSM (Tramer et al. 2018): X' = X + a * sign(N(0, I)), then X' + (eps - a) * sign(dJ/dX'), a = eps/2."""

    def __post_init__(self):
        self.name = "r-fgsm"

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = self.epsilon / 2
        start = (x + a * self.uniform_noise(target, x, 1.0).sign()).clamp(0, 1)
        grad = input_gradient(_cross_entropy(target, y), start)
        return self.project(start + (self.epsilon - a) * grad.sign(), x)


@dataclass
class BIM(Attack):
    """eq. 3 from X_adv,0 = X with n = floor(2 eps / alpha + 2) steps; alpha defaults to eps / 10."""

    alpha: float | None = None
    random_start: bool = False

    def __post_init__(self):
        self.name = "pgd" if self.random_start else "bim"
        if self.alpha is None:
            self.alpha = self.epsilon / 10

    @property
    def steps(self) -> int:
        return int(2 * self.epsilon / self.alpha + 2)

    def settings(self) -> dict:
        return {**super().settings(), "steps": self.steps}

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd_linf(target.classifier, x, y, self.epsilon, self.alpha, self.steps,
                        random_start=self.random_start, generator=self.generator_on(target, x))


def PGD(epsilon: float, alpha: float | None = None) -> BIM:
    """PGD (Madry et al. 2018): eq. 3 from a uniform random point of the eps-ball."""
    return BIM(epsilon, alpha=alpha, random_start=True)
