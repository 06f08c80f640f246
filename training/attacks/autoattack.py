"""APGD-CE (Croce & Hein 2020, the first attack of AutoAttack) at 100 steps, from the Adversarial
Robustness Toolbox. Grey-box on the classifier, or adaptive on ``DefendedClassifier`` (unrolled
purification with EOT-averaged log-probabilities).

Shape: x (B, C, H, W) float in [0, 1], y (B,) int64 -> x_adv like x, within epsilon and [0, 1].
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from apudae.training.attacks.adaptive import EOT_DRAWS, DefendedClassifier
from apudae.training.attacks.base import ADAPTIVE, Attack, AttackTarget


def _art_classifier(model: nn.Module, x: torch.Tensor, classes: int):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                             nb_classes=classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if x.device.type == "cuda" else "cpu")


@dataclass
class APGD(Attack):
    """ART's AutoProjectedGradientDescent, l_inf, cross-entropy, ``steps`` iterations, one restart.
    ``adaptive``: attack purify + classify end to end with ``eot`` draws per gradient (default 20, as
    PGD-EOT; the non-adaptive APGD-CE attacks the classifier alone and takes one)."""

    steps: int = 100
    restarts: int = 1
    adaptive: bool = False
    eot: int | None = None
    reason: str = ""  # why steps/eot were lowered, when they were

    def __post_init__(self):
        self.name = "apgd-eot" if self.adaptive else "apgd-ce"
        if self.eot is None:
            self.eot = EOT_DRAWS if self.adaptive else 1
        if self.adaptive:
            self.threat_model, self.attacks_defence = ADAPTIVE, True

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from art.attacks.evasion import AutoProjectedGradientDescent

        model = DefendedClassifier(target, self.eot) if self.adaptive else target.classifier
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
