"""BIM and PGD (paper eq. 3; Madry et al. 2018): l_inf projected gradient ascent on the classifier, and
``pgd_linf``, the loop itself, which the counter-attacks, the EOT attacks and adversarial training share.

Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon (l_inf) and [0, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F

from apudae.training.attacks.base import Attack, AttackTarget, project_linf


def pgd_linf(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    epsilon: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Maximise cross-entropy within the l_inf ball of radius ``epsilon`` around ``x`` (eq. 3).

    x: (B, C, H, W) in [0, 1]; y: (B,) labels. Each step: x <- Clip_x^eps{x + alpha * sign(grad)},
    then clip to [0, 1]. ``random_start`` begins at a uniform point of the ball (Madry) instead of x (BIM).
    ``loss(adv, y) -> scalar`` replaces the default cross-entropy of ``model(adv)`` (counter-attack B,
    EOT losses through the defence); ``model`` is then unused.
    Returns the adversarial batch, detached, same shape as x.
    """
    x = x.detach()
    adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        adv = (x + epsilon * noise).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        value = F.cross_entropy(model(adv), y) if loss is None else loss(adv, y)
        (grad,) = torch.autograd.grad(value, adv)
        adv = project_linf(adv.detach() + alpha * grad.sign(), x, epsilon)
    return adv.detach()


@dataclass
class BIM(Attack):
    """eq. 3 from X_adv,0 = X with n = floor(2 eps / alpha + 2) steps; alpha defaults to eps / 10."""

    name = "bim"
    #: start from a uniform random point of the eps-ball instead of X (PGD)
    random_start: ClassVar[bool] = False

    alpha: float | None = None

    @classmethod
    def build(cls, epsilon: float, steps: int | None = None, eot: int | None = None,
              reason: str = "", alpha: float | None = None) -> list[Attack]:
        """The attack with step ``alpha`` (eps / 10 when None); its steps follow from it (eq. 3)."""
        return [cls(epsilon, alpha=alpha)]

    def __post_init__(self):
        if self.alpha is None:
            self.alpha = self.epsilon / 10

    @property
    def steps(self) -> int:
        """floor(2 eps / alpha + 2), with budgets typed as rounded decimals (5/255 as 0.0196078, alpha 1/255
        as 0.0039216) counted as the fractions they stand for: within 1e-3 of a whole number is that number."""
        return math.floor(2 * self.epsilon / self.alpha + 2 + 1e-3)

    def settings(self) -> dict:
        return {**super().settings(), "random_start": self.random_start, "steps": self.steps}

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd_linf(target.classifier, x, y, self.epsilon, self.alpha, self.steps,
                        random_start=self.random_start, generator=self.generator_on(target, x))


@dataclass
class PGD(BIM):
    """PGD (Madry et al. 2018): eq. 3 from a uniform random point of the eps-ball."""

    name = "pgd"
    random_start = True
