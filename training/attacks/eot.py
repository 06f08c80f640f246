"""The EOT attacks on the whole purify + classify pipeline, averaged over the defence's randomness
(Expectation over Transformation), and what they share with APGD-EOT (``eot_batch``, ``DefendedClassifier``).

- BPDA+EOT (Athalye et al. 2018): forward through the real purifier, backward as the identity.
- PGD-EOT: exact gradients through the unrolled purification loop (``purify_unrolled``); the bar of
  Lee & Kim 2023 is 200 steps with EOT 20.
Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon and [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from apudae.models.purification import NoiseSource, purify, purify_unrolled
from apudae.training.attacks.base import ADAPTIVE, Attack, AttackTarget, TakesOverrides
from apudae.training.attacks.pgd import pgd_linf

EOT_DRAWS = 20  # the bar of Lee & Kim 2023 for every adaptive attack on a randomised defence


class _PurifyIdentityBackward(torch.autograd.Function):
    """BPDA: forward = the real (non-differentiable) purification, backward = identity."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, target: AttackTarget, noise: NoiseSource) -> torch.Tensor:
        return purify(target.dae, x, target.calibration, target.settings, noise).images

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None, None


def eot_batch(target: AttackTarget, x: torch.Tensor, eot: int) -> tuple[torch.Tensor, NoiseSource]:
    """x (B, C, H, W) repeated ``eot`` times along the batch, (eot * B, C, H, W), and the defence's noise
    for it: copy k draws with its own seed, taken from the attack's generator. EOT averages over these
    draws of the defence's randomness, the same attack seed repeats them, and the one batched
    purification equals ``eot`` separate ones (``NoiseSource.for_draws``) at a fraction of the kernel
    launches on a GPU."""
    seeds = [int(torch.randint(0, 2**62, (1,), generator=target.generator)) for _ in range(eot)]
    return x.repeat(eot, 1, 1, 1), NoiseSource.for_draws(x, seeds)


class DefendedClassifier(nn.Module):
    """classifier(purify_unrolled(x)) with log-probabilities averaged over ``eot`` draws of the defence's
    randomness: (B, C, H, W) in [0, 1] -> (B, classes) log-probabilities. Cross-entropy of the average
    equals the average cross-entropy, so its gradient is the EOT gradient."""

    def __init__(self, target: AttackTarget, eot: int = 1):
        super().__init__()
        self.target, self.eot, self.classifier = target, eot, target.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.target
        copies, noise = eot_batch(t, x, self.eot)
        purified = purify_unrolled(t.dae, copies, t.calibration, t.settings, noise)
        return F.log_softmax(t.classifier(purified), dim=1).view(self.eot, x.shape[0], -1).mean(0)


@dataclass
class BPDAEOT(TakesOverrides, Attack):
    """PGD (eq. 3, random start) on E_r[J(classifier(purify_r(X)))] with the identity as purify's backward."""

    name, threat_model, attacks_defence = "bpda-eot", ADAPTIVE, True

    steps: int = 200
    eot: int = EOT_DRAWS
    alpha: float | None = None
    reason: str = ""  # why steps/eot are below 200/20, when they are

    def __post_init__(self):
        if self.alpha is None:
            self.alpha = max(2.5 * self.epsilon / self.steps, self.epsilon / 40)

    def _logits(self, target: AttackTarget, copies: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        """classifier(purify(copies)) with the identity as purify's backward; copies: (eot * B, C, H, W)."""
        return target.classifier(_PurifyIdentityBackward.apply(copies, target, noise))

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def objective(adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            copies, noise = eot_batch(target, adv, self.eot)
            return F.cross_entropy(self._logits(target, copies, noise), labels.repeat(self.eot), reduction="sum")

        return pgd_linf(None, x, y, self.epsilon, self.alpha, self.steps, random_start=True,
                        generator=self.generator_on(target, x), loss=objective)


@dataclass
class PGDEOT(BPDAEOT):
    """PGD-EOT with the exact gradient of the unrolled purification loop (every step, create_graph)."""

    name = "pgd-eot"

    def _logits(self, target: AttackTarget, copies: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        return target.classifier(purify_unrolled(target.dae, copies, target.calibration, target.settings, noise))
