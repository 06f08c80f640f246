"""The paper's purification variants, one small class each (eq. 8-13).

dist is eq. 7's per-image error (mean over pixels); mu and sigma are the bundle's clean calibration.
"""
from __future__ import annotations

import torch

from apudae.models.purification.base import IterativePurifier, Purifier
from apudae.models.purification.randomness import NoiseSource, random_resize_rotate
from apudae.models.purification.settings import VARIANTS


class Direct(Purifier):
    """"APuDAE (Direct)": X_pur = DAE(X), the reconstruction itself (no update steps)."""

    always_changes = True

    def run(self, x: torch.Tensor, differentiable: bool = False, error: torch.Tensor | None = None,
            noise: NoiseSource | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(differentiable and x.requires_grad):
            out = self.dae(x)
        return out, torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)


class FixedSteps(IterativePurifier):
    """A, eq. 8: n plain steps down L = dist(X, DAE(X)), no momentum."""

    uses_momentum = False

    def loss(self, dist: torch.Tensor) -> torch.Tensor:
        return dist


class Momentum(FixedSteps):
    """B, eq. 9: eq. 8's loss with momentum w_i = beta * w_{i-1} + (1 - beta) * grad."""

    uses_momentum = True


class ErrorScaledStep(Momentum):
    """C, eq. 10: B with step alpha_i = alpha * (1 - exp(-((dist - mu) / sigma)^2)), small near mu."""

    def step_size(self, dist: torch.Tensor) -> torch.Tensor:
        z = self.calibration.z_score(dist.detach())
        return self.settings.alpha * (1 - torch.exp(-z.pow(2)))


class TargetDistribution(Momentum):
    """D, eq. 11: L = |dist - mu| / sigma, pulls the error towards mu from both sides."""

    def loss(self, dist: torch.Tensor) -> torch.Tensor:
        return (dist - self.calibration.mu).abs() / self.calibration.sigma


class TargetAboveMu(Momentum):
    """E, the modified update rule: L = max(dist - mu, 0) / sigma. Images under mu are left unchanged; an
    image that started above mu keeps its momentum after its error falls under mu (``settings.carry``)."""

    def loss(self, dist: torch.Tensor) -> torch.Tensor:
        return (dist - self.calibration.mu).clamp_min(0) / self.calibration.sigma


class NoisyTarget(TargetAboveMu):
    """F, eq. 12: E with the DAE fed X + gamma * r, r ~ N(0, I) drawn afresh at each step."""

    def dae_input(self, x: torch.Tensor, rows: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        if self.settings.gamma == 0:
            return x
        return x + self.settings.gamma * noise.normal(rows, tuple(x.shape[1:]), x.dtype)


class TransformedNoisyTarget(NoisyTarget):
    """G, eq. 13: F started from t(X, f, theta), a random zoom and rotation of the input."""

    always_changes = True

    def start(self, x: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        return random_resize_rotate(x, noise, self.settings.scale, self.settings.rotation)


#: variant name -> its class, one class per name of ``VARIANTS`` in the same order
PURIFIERS: dict[str, type[Purifier]] = dict(zip(VARIANTS, (
    Direct, FixedSteps, Momentum, ErrorScaledStep, TargetDistribution, TargetAboveMu, NoisyTarget,
    TransformedNoisyTarget), strict=True))
