"""The settings of one evaluation run, as one dataclass (filled by the CLI or the service's /evaluate)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from apudae.models.purification import VARIANTS, PurifySettings
from apudae.training.attacks import ADAPTIVE_ATTACKS, ATTACKS, STEP_SIZE_ATTACKS, build_attacks

DEFAULT_ATTACKS = ("random", "fgsm", "r-fgsm", "bim", "pgd", "cw")
COMPARE_SETTINGS = {"n": int, "alpha": float, "beta": float, "gamma": float}  # what a compare entry may change


def compare_entry(entry: str) -> tuple[str, dict]:
    """One ``compare`` entry -> (variant, settings overrides). "A" -> ("A", {}); "A:n=12" -> ("A", {"n": 12})
    (the paper's Table 3 rows A at n = 12, 15, 18); several overrides chain: "F:alpha=0.02:gamma=0.05".
    Raises ValueError naming what to fix."""
    variant, *assignments = entry.split(":")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} in {entry!r}; choose one of {', '.join(VARIANTS)}")
    overrides = {}
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        if key not in COMPARE_SETTINGS:
            raise ValueError(f"{entry!r}: write variant:setting=value with a setting from "
                             f"{', '.join(COMPARE_SETTINGS)} (e.g. A:n=12)")
        try:
            overrides[key] = COMPARE_SETTINGS[key](value)
        except ValueError:
            raise ValueError(f"{entry!r}: {key} must be a{'n integer' if key == 'n' else ' number'}") from None
    try:
        PurifySettings(variant=variant, **overrides)  # range checks (n >= 0, 0 <= beta < 1, ...)
    except ValueError as error:
        raise ValueError(f"{entry!r}: {error}") from None
    return variant, overrides


@dataclass(frozen=True)
class EvaluationConfig:
    """bundle: path of a bundle directory; variant: the purification variant under test (the bundle's
    default when None); compare: further variants evaluated beside it with the same settings, shown the
    same grey-box adversaries (the paper's Table 3 compares A-G this way; adaptive attacks target each
    variant on its own), each a variant name or one with its own settings ("A:n=12", see compare_entry);
    combined: also evaluate the variant followed by the bundle's adversarially trained classifier instead of its
    plain one (a combined defence, "<variant>+adversarial-training"); budget: start from the bundle's settings
    for this attack budget (``Bundle.purification_for``; None: its defaults); purify: further PurifySettings
    overrides (n, alpha, beta, gamma, step, ...);
    attacks: names from ``training.attacks.ATTACKS``; epsilons: l_inf budgets, each a full run;
    samples: test images (a seeded random subset of the test split; None = all); seed: subset, attack
    and purification randomness; quantize: round adversarial images to 8 bits before the defence sees
    them (as over HTTP); adaptive_steps/adaptive_eot: override PGD-EOT/BPDA (200 x 20) and APGD (100
    x 20); lowering them needs ``reduced_reason`` saying why; attack_alpha: the step of BIM, PGD and the
    counter-attacks (eps / 10 when None; their steps follow, eq. 3); resubmissions: how many times each adaptive
    adversary is sent to a randomised purifier (F, G), which must answer right every time unless it flags the
    image (DiffHammer's count; 1: once only); dataset/data_dir: test data (the bundle's data set by
    default); out: where the CLI writes JSON, markdown and plots (None: nothing written)."""

    bundle: str
    variant: str | None = None
    budget: float | None = None
    compare: tuple[str, ...] = ()
    combined: bool = False
    purify: dict = field(default_factory=dict)
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    epsilons: tuple[float, ...] = (0.1,)
    samples: int | None = 1000
    seed: int = 0
    batch_size: int = 250
    device: str = "cpu"
    quantize: bool = True
    adaptive_steps: int | None = None
    adaptive_eot: int | None = None
    reduced_reason: str = ""
    attack_alpha: float | None = None
    resubmissions: int = 10
    dataset: str | None = None
    data_dir: str | None = None
    out: str | None = None

    def __post_init__(self):
        if self.variant is not None and self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        for entry in self.compare:
            compare_entry(entry)
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise ValueError(f"unknown attacks {unknown}; choose from {', '.join(ATTACKS)}")
        if self.resubmissions < 1:
            raise ValueError(f"resubmissions must be >= 1 (1: each adversary is sent once), not {self.resubmissions}")
        if self.batch_size < 1 or (self.samples is not None and self.samples < 1):
            raise ValueError("batch_size and samples must be positive")
        if not self.epsilons or any(e < 0 for e in self.epsilons):
            raise ValueError("give at least one epsilon, each >= 0")
        if self.attack_alpha is not None:
            if not self.attack_alpha > 0:
                raise ValueError(f"attack_alpha must be > 0, not {self.attack_alpha}")
            if not set(self.attacks) & set(STEP_SIZE_ATTACKS):
                raise ValueError(f"attack_alpha sets the step of {', '.join(STEP_SIZE_ATTACKS)}; "
                                 f"none of them is among the attacks {list(self.attacks)}")
        lowered = self.lowered_attacks()
        if lowered and not self.reduced_reason.strip():
            raise ValueError(f"adaptive_steps/adaptive_eot lower {', '.join(lowered)} below the standard "
                             f"(PGD-EOT/BPDA 200 x 20, APGD 100 x 20): say why in reduced_reason (--reduced-reason)")

    def lowered_attacks(self) -> list[str]:
        """The requested adaptive attacks whose steps or EOT draws the overrides set below their defaults."""
        lowered = []
        for name in (a for a in self.attacks if a in ADAPTIVE_ATTACKS):
            default = build_attacks(name, 0.0)[0]
            if not hasattr(default, "eot"):  # the counter-attacks: a fixed BIM, no EOT
                continue
            steps, eot = self.adaptive_steps or default.steps, self.adaptive_eot or default.eot
            if steps < default.steps or eot < default.eot:
                lowered.append(name)
        return lowered

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attacks"], d["epsilons"], d["compare"] = list(self.attacks), list(self.epsilons), list(self.compare)
        return d
