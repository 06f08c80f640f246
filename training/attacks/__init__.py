"""Adversarial attacks (paper eq. 1-4, 14, 15) and adaptive attacks on the whole defence.

``build_attack(name, epsilon, ...)`` is the one place that turns a command-line name into an attack.
"""
from __future__ import annotations

from apudae.training.attacks.adaptive import BPDAEOT, PGDEOT
from apudae.training.attacks.autoattack import APGD
from apudae.training.attacks.base import ADAPTIVE, GREY_BOX, Attack, AttackTarget
from apudae.training.attacks.classic import BIM, FGSM, PGD, RFGSM, RandomNoise
from apudae.training.attacks.counter import CounterA, CounterB
from apudae.training.attacks.cw import CarliniWagnerL2

GREY_BOX_ATTACKS = ("random", "fgsm", "r-fgsm", "bim", "pgd", "cw", "apgd-ce")
ADAPTIVE_ATTACKS = ("counter-a", "counter-b", "bpda-eot", "pgd-eot", "apgd-eot")
ATTACKS = GREY_BOX_ATTACKS + ADAPTIVE_ATTACKS
COUNTER_B_BETAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)  # beta of eq. 15 swept; the worst is reported


def build_attacks(name: str, epsilon: float, steps: int | None = None, eot: int | None = None,
                  reason: str = "") -> list[Attack]:
    """The attack(s) called ``name`` at budget ``epsilon`` (one per beta for "counter-b").

    steps/eot override the defaults of the iterative adaptive attacks (PGD-EOT/BPDA: 200 steps x EOT 20,
    APGD-EOT: 100 x 20); ``reason`` records why they were lowered.
    """
    adaptive = {k: v for k, v in (("steps", steps), ("eot", eot)) if v is not None}
    builders = {
        "random": lambda: [RandomNoise(epsilon)],
        "fgsm": lambda: [FGSM(epsilon)],
        "r-fgsm": lambda: [RFGSM(epsilon)],
        "bim": lambda: [BIM(epsilon)],
        "pgd": lambda: [PGD(epsilon)],
        "cw": lambda: [CarliniWagnerL2(epsilon)],
        "apgd-ce": lambda: [APGD(epsilon, **({"steps": steps} if steps else {}), reason=reason)],
        "counter-a": lambda: [CounterA(epsilon)],
        "counter-b": lambda: [CounterB(epsilon, beta=b) for b in COUNTER_B_BETAS],
        "bpda-eot": lambda: [BPDAEOT(epsilon, **adaptive, reason=reason)],
        "pgd-eot": lambda: [PGDEOT(epsilon, **adaptive, reason=reason)],
        "apgd-eot": lambda: [APGD(epsilon, adaptive=True, **adaptive, reason=reason)],
    }
    if name not in builders:
        raise ValueError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
    return builders[name]()


__all__ = ["ADAPTIVE", "ADAPTIVE_ATTACKS", "ATTACKS", "Attack", "AttackTarget", "GREY_BOX", "GREY_BOX_ATTACKS",
           "build_attacks", "BIM", "BPDAEOT", "CarliniWagnerL2", "CounterA", "CounterB", "FGSM", "PGD", "PGDEOT",
           "RFGSM", "RandomNoise", "APGD"]
