"""What every attack shares: its name, its budget, its threat model, the models it may see, and the
image constraints of an adversary (the l_inf ball, [0, 1], 8-bit levels).

An attack is a small object with ``epsilon`` and a ``generate(target, x, y) -> x_adv`` method; ``target``
(an ``AttackTarget``) holds what the attacker is allowed to know. Each attack class names itself
(``name``) and its threat model once, as class attributes; ``training.attacks`` builds its registry
from them. Threat models:

- ``GREY_BOX``: the attacker knows the classifier only (the paper's Tables 2-4).
- ``ADAPTIVE``: the attacker attacks the defence too (counter-attacks of Table 5, BPDA, PGD-EOT).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from apudae.models.calibration import Calibration
from apudae.models.purification import PurifySettings

GREY_BOX, ADAPTIVE = "grey-box", "adaptive"


def project_linf(adv: torch.Tensor, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Clip_x^eps then [0, 1] (the pi of eq. 14, 15): ``adv`` clipped into the l_inf ball of radius
    ``epsilon`` around ``x``, then into [0, 1]. adv, x: (B, C, H, W) -> like adv."""
    return torch.min(torch.max(adv, x - epsilon), x + epsilon).clamp(0, 1)


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] images to the 256 levels k/255 of an 8-bit PNG (what an uploaded adversary can be)."""
    return images.clamp(0, 1).mul(255).round().div(255)


@dataclass
class AttackTarget:
    """classifier: (B, C, H, W) in [0, 1] -> logits; dae, calibration, settings: the defence an adaptive
    attacker attacks (None for the undefended baselines); generator: the attack's own randomness."""

    classifier: nn.Module
    dae: nn.Module | None = None
    calibration: Calibration | None = None
    settings: PurifySettings | None = None
    generator: torch.Generator | None = None

    @property
    def device(self) -> torch.device:
        return next(self.classifier.parameters()).device


@dataclass
class Attack:
    """Base class. epsilon: l_inf budget in [0, 1] pixel units (inf for the unbounded sanity check).
    ``generate`` returns x_adv (B, C, H, W), detached, in [0, 1] and within epsilon of x."""

    #: the command-line name, the registry's key
    name: ClassVar[str] = ""
    threat_model: ClassVar[str] = GREY_BOX
    #: True when the attack targets one particular defence (its settings), so each defence gets its own run
    attacks_defence: ClassVar[bool] = False

    epsilon: float

    @classmethod
    def build(cls, epsilon: float, steps: int | None = None, eot: int | None = None,
              reason: str = "", alpha: float | None = None) -> list[Attack]:
        """The attack(s) of this class at budget ``epsilon``; ``steps``/``eot``/``reason``/``alpha`` are the
        overrides of ``training.attacks.build_attacks``, used by the attacks that take them."""
        return [cls(epsilon)]

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def settings(self) -> dict:
        """Every parameter of the attack, for the report."""
        return {"epsilon": self.epsilon, "name": self.name, "threat_model": self.threat_model,
                "attacks_defence": self.attacks_defence, **vars(self)}

    def project(self, adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``project_linf`` at this attack's epsilon."""
        return project_linf(adv, x, self.epsilon)

    @staticmethod
    def generator_on(target: AttackTarget, x: torch.Tensor) -> torch.Generator | None:
        """The attack's generator for draws on x's device: itself on the CPU, else a generator there seeded
        from it, so that ``--seed`` repeats the attack on a GPU too."""
        if target.generator is None or x.device.type == "cpu":
            return target.generator
        seed = int(torch.randint(0, 2**62, (1,), generator=target.generator))
        return torch.Generator(device=x.device).manual_seed(seed)

    def uniform_noise(self, target: AttackTarget, x: torch.Tensor, scale: float) -> torch.Tensor:
        """U(-scale, scale) noise shaped like x, from the attack's generator (eq. 1)."""
        noise = torch.rand(x.shape, generator=target.generator, device="cpu", dtype=x.dtype).to(x.device)
        return (2 * noise - 1) * scale


class TakesOverrides:
    """Mixin of the attack classes that take ``build``'s ``steps`` and ``eot`` overrides (each where
    given) and record ``reason``; the class has ``steps``, ``eot`` and ``reason`` fields."""

    @classmethod
    def build(cls, epsilon: float, steps: int | None = None, eot: int | None = None,
              reason: str = "", alpha: float | None = None) -> list[Attack]:
        overrides = {k: v for k, v in (("steps", steps), ("eot", eot)) if v is not None}
        return [cls(epsilon, **overrides, reason=reason)]


def input_gradient(loss_fn, x: torch.Tensor) -> torch.Tensor:
    """d loss_fn(x).sum() / dx for a per-image loss; no gradients on any weights. x: (B, C, H, W)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(x).sum(), x)
    return grad
