"""Adversarial attacks (paper eq. 1-4, 14, 15) and adaptive attacks on the whole defence.

Each attack lives in the module named after it: ``fgsm`` (random, fgsm, r-fgsm), ``pgd`` (bim, pgd and
the l_inf PGD loop), ``cw``, ``apgd`` (apgd-ce, apgd-eot), ``counter`` (counter-a, counter-b), ``eot``
(bpda-eot, pgd-eot) and ``detector_aware`` (pgd-eot-detector, bpda-eot-detector, counter-b-detector: they
evade the detector too). ``build_attacks(name, epsilon, ...)`` is the one place that turns a command-line
name into an attack; the names and threat models are the classes' own (``Attack.name``,
``Attack.threat_model``).
"""
from __future__ import annotations

from apudae.training.attacks.apgd import APGD, APGDCE, APGDEOT
from apudae.training.attacks.base import ADAPTIVE, GREY_BOX, Attack, AttackTarget
from apudae.training.attacks.counter import COUNTER_B_BETAS, CounterA, CounterB
from apudae.training.attacks.cw import CarliniWagnerL2
from apudae.training.attacks.detector_aware import (DETECTOR_WEIGHTS, DetectorAwareBPDAEOT, DetectorAwareCounterB,
                                                    DetectorAwarePGDEOT)
from apudae.training.attacks.eot import BPDAEOT, PGDEOT
from apudae.training.attacks.fgsm import FGSM, RFGSM, RandomNoise
from apudae.training.attacks.pgd import BIM, PGD

#: every attack class, in the order the CLI lists their names (grey-box first)
_CLASSES: tuple[type[Attack], ...] = (RandomNoise, FGSM, RFGSM, BIM, PGD, CarliniWagnerL2, APGDCE,
                                      CounterA, CounterB, BPDAEOT, PGDEOT, APGDEOT, DetectorAwareCounterB,
                                      DetectorAwareBPDAEOT, DetectorAwarePGDEOT)
REGISTRY: dict[str, type[Attack]] = {cls.name: cls for cls in _CLASSES}
GREY_BOX_ATTACKS = tuple(name for name, cls in REGISTRY.items() if cls.threat_model == GREY_BOX)
ADAPTIVE_ATTACKS = tuple(name for name, cls in REGISTRY.items() if cls.threat_model == ADAPTIVE)
ATTACKS = GREY_BOX_ATTACKS + ADAPTIVE_ATTACKS


#: the attacks that take ``build_attacks``'s ``alpha``: BIM steps (eq. 3) and the counter-attacks built on them
STEP_SIZE_ATTACKS = tuple(name for name, cls in REGISTRY.items() if issubclass(cls, BIM))


def build_attacks(name: str, epsilon: float, steps: int | None = None, eot: int | None = None,
                  reason: str = "", alpha: float | None = None) -> list[Attack]:
    """The attack(s) called ``name`` at budget ``epsilon`` (one per beta for "counter-b", one per weight for
    the detector-aware attacks).

    steps/eot override the defaults of the iterative adaptive attacks (PGD-EOT/BPDA: 200 steps x EOT 20,
    APGD-EOT: 100 x 20; APGD-CE takes ``steps`` only); ``reason`` records why they were lowered.
    ``alpha`` is the step of the ``STEP_SIZE_ATTACKS`` (default eps / 10; the paper's Table 4 uses 1/255),
    whose step count follows from it (eq. 3: floor(2 eps / alpha + 2)).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
    return REGISTRY[name].build(epsilon, steps, eot, reason, alpha)


__all__ = ["ADAPTIVE", "ADAPTIVE_ATTACKS", "ATTACKS", "Attack", "AttackTarget", "COUNTER_B_BETAS", "DETECTOR_WEIGHTS",
           "DetectorAwareBPDAEOT", "DetectorAwareCounterB", "DetectorAwarePGDEOT", "GREY_BOX",
           "GREY_BOX_ATTACKS", "REGISTRY", "STEP_SIZE_ATTACKS", "build_attacks", "APGD", "APGDCE", "APGDEOT", "BIM", "BPDAEOT",
           "CarliniWagnerL2", "CounterA", "CounterB", "FGSM", "PGD", "PGDEOT", "RFGSM", "RandomNoise"]
