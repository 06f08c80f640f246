"""Repeated timing and its summary: every bench figure is a median over repeats, with its spread."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Spread:
    """Median of ``samples`` with min, max and the interquartile range (q1, q3); ``n`` samples."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> "Spread":
        if not samples:
            raise ValueError("no samples to summarise")
        ordered = sorted(samples)
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
        return cls(statistics.median(ordered), ordered[0], ordered[-1], q1, q3, len(ordered))

    def to_dict(self) -> dict:
        return asdict(self)

    def scaled(self, factor: float) -> "Spread":
        """The same spread with every value multiplied by ``factor`` (> 0), e.g. seconds -> images/s."""
        return Spread(self.median * factor, self.low * factor, self.high * factor, self.q1 * factor,
                      self.q3 * factor, self.n)

    def inverse(self, numerator: float = 1.0) -> "Spread":
        """``numerator / value`` for every value (a rate from a duration); low and high swap places."""
        return Spread(numerator / self.median, numerator / self.high, numerator / self.low, numerator / self.q3,
                      numerator / self.q1, self.n)


def time_repeated(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Spread:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Spread.of(samples)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values`` by linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)
