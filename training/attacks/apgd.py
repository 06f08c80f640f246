"""APGD (Croce & Hein 2020, the first attack of AutoAttack) with cross-entropy at 100 steps, from the
Adversarial Robustness Toolbox, in two threat models:

- APGD-CE: grey-box, on the classifier alone.
- APGD-EOT: adaptive, on ``DefendedClassifier`` (unrolled purification with EOT-averaged log-probabilities).

Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon and [0, 1].
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from apudae.training.attacks.base import ADAPTIVE, Attack, AttackTarget, TakesOverrides
from apudae.training.attacks.eot import EOT_DRAWS, DefendedClassifier


def _art_classifier(model: nn.Module, x: torch.Tensor, classes: int):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                             nb_classes=classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if x.device.type == "cuda" else "cpu")


@dataclass
class APGD(Attack):
    """ART's AutoProjectedGradientDescent, l_inf, cross-entropy, ``steps`` iterations, one restart, on
    ``model(target)``; ``eot``: draws of the defence's randomness per gradient."""

    steps: int = 100
    restarts: int = 1
    eot: int = 1
    reason: str = ""  # why steps/eot were lowered, when they were

    def model(self, target: AttackTarget) -> nn.Module:
        """What the attack differentiates: (B, C, H, W) in [0, 1] -> (B, classes) logits or log-probabilities."""
        raise NotImplementedError

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from art.attacks.evasion import AutoProjectedGradientDescent

        model = self.model(target)
        classes = int(target.classifier(x[:1]).shape[1])
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=target.generator))
        np.random.seed(seed)  # ART draws its random start from numpy's global generator
        logging.getLogger("art").setLevel(logging.WARNING)
        attack = AutoProjectedGradientDescent(
            _art_classifier(model, x, classes), norm=np.inf, eps=self.epsilon, eps_step=2 * self.epsilon,
            max_iter=self.steps, nb_random_init=self.restarts, batch_size=x.shape[0],
            loss_type="cross_entropy", verbose=False)
        adv = attack.generate(x.detach().cpu().numpy().astype(np.float32), y.cpu().numpy())
        return self.project(torch.from_numpy(adv).to(x.device, x.dtype), x)


@dataclass
class APGDCE(APGD):
    """APGD-CE on the classifier alone: one draw per gradient (the classifier has no randomness to average)."""

    name = "apgd-ce"

    @classmethod
    def build(cls, epsilon: float, steps: int | None = None, eot: int | None = None,
              reason: str = "", alpha: float | None = None) -> list[Attack]:
        return [cls(epsilon, **({"steps": steps} if steps else {}), reason=reason)]

    def model(self, target: AttackTarget) -> nn.Module:
        return target.classifier


@dataclass
class APGDEOT(TakesOverrides, APGD):
    """APGD on purify + classify end to end with ``eot`` draws per gradient (default 20, as PGD-EOT)."""

    name, threat_model, attacks_defence = "apgd-eot", ADAPTIVE, True

    eot: int = EOT_DRAWS

    def model(self, target: AttackTarget) -> nn.Module:
        return DefendedClassifier(target, self.eot)
