"""Accuracy bookkeeping: counts per (epsilon, defence, attack) cell, Wilson intervals, timing and the
purification steps the images took. Each cell also counts the images the bare classifier classifies
correctly clean (the paper's ImageNet protocol evaluates only those).

With the bundle's detector (models/detector.py) each cell also counts, per false-positive rate, the images
flagged, those defended with rejection (flagged, or classified correctly) and those accepted (not flagged)
and classified correctly, and keeps every image's detection score for the ROC-AUC against the clean images
of the same epsilon and defence.

Every image counts, including those of the last partial batch: a cell's accuracy is correct / total over
all images it saw, never a mean of per-batch accuracies.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

CLEAN = "clean"  # the attack name of the unattacked images
#: the counts a cell keeps per false-positive rate (the worst-case row has only "defended")
REJECTION_COUNTS = ("flagged", "defended", "accepted_correct")


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion correct/total; (0, 1) when total is 0."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def roc_auc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    """ROC-AUC of a score that should be higher on ``positives`` (M,) than on ``negatives`` (N,):
    P(positive > negative) + P(tie) / 2 over all M * N pairs (Mann-Whitney, from average ranks);
    nan when either is empty."""
    if negatives.numel() == 0 or positives.numel() == 0:
        return float("nan")
    _, inverse, counts = torch.unique(torch.cat([negatives, positives]).double(), return_inverse=True,
                                      return_counts=True)
    counts = counts.double()
    ranks = (counts.cumsum(0) - (counts - 1) / 2)[inverse]  # 1-based, ties share their average rank
    n, m = negatives.numel(), positives.numel()
    return float((ranks[n:].sum() - m * (m + 1) / 2) / (m * n))


def rejection_counts(correct: torch.Tensor, flags: dict[float, torch.Tensor]) -> dict[str, dict[str, int]]:
    """Per false-positive rate (keyed "0.01"): of the images (``correct``, (B,) bool, and each rate's
    ``flags``, (B,) bool), how many are flagged, defended (flagged or correct) and accepted and correct."""
    return {f"{rate:g}": {"flagged": int(flagged.sum()), "defended": int((flagged | correct).sum()),
                          "accepted_correct": int((correct & ~flagged).sum())} for rate, flagged in flags.items()}


@dataclass
class Cell:
    """One table cell: how many of ``total`` images the defence classified correctly under the attack;
    ``steps`` sums the purification steps they took (None for a defence that does not purify);
    ``subset_correct`` of ``subset_total``: the same count on the images the bare classifier gets right clean."""

    epsilon: float
    defence: str
    attack: str
    threat_model: str
    correct: int = 0
    total: int = 0
    attack_seconds: float = 0.0
    defence_seconds: float = 0.0
    steps: int | None = None
    subset_correct: int = 0
    subset_total: int = 0
    #: false-positive rate ("0.01") -> counts of ``REJECTION_COUNTS`` (empty: the run had no detector)
    rejection: dict[str, dict[str, int]] = field(default_factory=dict)
    #: every image's detection score (eq. 7's error of the defence's input), for the ROC-AUC
    scores: list[float] = field(default_factory=list)

    def add(self, correct: int, total: int, attack_seconds: float, defence_seconds: float,
            steps: int | None, subset: tuple[int, int] = (0, 0), rejection: dict | None = None,
            scores: list[float] | None = None) -> None:
        self.correct += correct
        self.total += total
        for rate, counts in (rejection or {}).items():
            kept = self.rejection.setdefault(rate, {})
            for name, count in counts.items():
                kept[name] = kept.get(name, 0) + count
        self.scores.extend(scores or ())
        self.subset_correct += subset[0]
        self.subset_total += subset[1]
        self.attack_seconds += attack_seconds
        self.defence_seconds += defence_seconds
        if steps is not None:
            self.steps = (self.steps or 0) + steps

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def with_rejection(self) -> dict[str, dict]:
        """Per false-positive rate: robust accuracy with rejection (``accuracy``: flagged or correct, with
        its ci95) and, where the cell counts them, the share flagged (``detection_rate``; for clean images
        the clean rejection rate) and the accuracy on the accepted images (``accepted_accuracy``; None
        when every image was flagged)."""
        out = {}
        for rate, counts in self.rejection.items():
            entry = {"accuracy": counts["defended"] / self.total if self.total else float("nan"),
                     "ci95": list(wilson_interval(counts["defended"], self.total)), **counts}
            if "flagged" in counts:
                accepted = self.total - counts["flagged"]
                entry["detection_rate"] = counts["flagged"] / self.total if self.total else float("nan")
                entry["accepted"] = accepted
                entry["accepted_accuracy"] = counts["accepted_correct"] / accepted if accepted else None
            out[rate] = entry
        return out

    def to_dict(self) -> dict:
        low, high = wilson_interval(self.correct, self.total)
        n = max(self.total, 1)
        return {"epsilon": self.epsilon, "defence": self.defence, "attack": self.attack,
                "threat_model": self.threat_model, "correct": self.correct, "total": self.total,
                "accuracy": self.accuracy, "ci95": [low, high],
                "attack_seconds_per_image": self.attack_seconds / n,
                "defence_seconds_per_image": self.defence_seconds / n,
                "purification_steps_per_image": None if self.steps is None else self.steps / n,
                "correct_subset": {"correct": self.subset_correct, "total": self.subset_total,
                                   "accuracy": self.subset_correct / self.subset_total if self.subset_total
                                   else float("nan"),
                                   "ci95": list(wilson_interval(self.subset_correct, self.subset_total))},
                **({"with_rejection": self.with_rejection()} if self.rejection else {})}


class Tally:
    """All cells of an evaluation, created on first use, in insertion order."""

    def __init__(self):
        self.cells: dict[tuple[float, str, str], Cell] = {}

    def add(self, epsilon: float, defence: str, attack: str, threat_model: str, correct: int, total: int,
            attack_seconds: float = 0.0, defence_seconds: float = 0.0, steps: int | None = None,
            subset: tuple[int, int] = (0, 0), rejection: dict | None = None,
            scores: list[float] | None = None) -> None:
        """``steps``: the purification steps these ``total`` images took in all (None: not purified);
        ``subset``: (correct, total) among them on the images the bare classifier gets right clean;
        ``rejection``: ``rejection_counts`` of them; ``scores``: their detection scores."""
        key = (epsilon, defence, attack)
        if key not in self.cells:
            self.cells[key] = Cell(epsilon, defence, attack, threat_model)
        self.cells[key].add(correct, total, attack_seconds, defence_seconds, steps, subset, rejection, scores)

    def to_list(self) -> list[dict]:
        """Every cell's ``to_dict``; a cell with detection scores also gets ``roc_auc`` against the clean
        images of its epsilon and defence (not the clean cell itself)."""
        out = []
        for (epsilon, defence, attack), cell in self.cells.items():
            d = cell.to_dict()
            clean = self.cells.get((epsilon, defence, CLEAN))
            if cell.scores and attack != CLEAN and clean is not None and clean.scores:
                d["roc_auc"] = roc_auc(torch.tensor(clean.scores), torch.tensor(cell.scores))
            out.append(d)
        return out

    def state(self) -> list[dict]:
        """The raw cells (counts and summed seconds), for a checkpoint; ``restore`` reads them back."""
        return [asdict(cell) for cell in self.cells.values()]

    def restore(self, state: list[dict]) -> None:
        self.cells = {(c["epsilon"], c["defence"], c["attack"]): Cell(**c) for c in state}
