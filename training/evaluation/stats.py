"""Accuracy bookkeeping: counts per (epsilon, defence, attack) cell, Wilson intervals, timing and the
purification steps the images took. Each cell also counts the images the bare classifier classifies
correctly clean (the paper's ImageNet protocol evaluates only those).

Every image counts, including those of the last partial batch: a cell's accuracy is correct / total over
all images it saw, never a mean of per-batch accuracies.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion correct/total; (0, 1) when total is 0."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


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

    def add(self, correct: int, total: int, attack_seconds: float, defence_seconds: float,
            steps: int | None, subset: tuple[int, int] = (0, 0)) -> None:
        self.correct += correct
        self.total += total
        self.subset_correct += subset[0]
        self.subset_total += subset[1]
        self.attack_seconds += attack_seconds
        self.defence_seconds += defence_seconds
        if steps is not None:
            self.steps = (self.steps or 0) + steps

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

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
                                   "ci95": list(wilson_interval(self.subset_correct, self.subset_total))}}


class Tally:
    """All cells of an evaluation, created on first use, in insertion order."""

    def __init__(self):
        self.cells: dict[tuple[float, str, str], Cell] = {}

    def add(self, epsilon: float, defence: str, attack: str, threat_model: str, correct: int, total: int,
            attack_seconds: float = 0.0, defence_seconds: float = 0.0, steps: int | None = None,
            subset: tuple[int, int] = (0, 0)) -> None:
        """``steps``: the purification steps these ``total`` images took in all (None: not purified);
        ``subset``: (correct, total) among them on the images the bare classifier gets right clean."""
        key = (epsilon, defence, attack)
        if key not in self.cells:
            self.cells[key] = Cell(epsilon, defence, attack, threat_model)
        self.cells[key].add(correct, total, attack_seconds, defence_seconds, steps, subset)

    def to_list(self) -> list[dict]:
        return [cell.to_dict() for cell in self.cells.values()]

    def state(self) -> list[dict]:
        """The raw cells (counts and summed seconds), for a checkpoint; ``restore`` reads them back."""
        return [asdict(cell) for cell in self.cells.values()]

    def restore(self, state: list[dict]) -> None:
        self.cells = {(c["epsilon"], c["defence"], c["attack"]): Cell(**c) for c in state}
