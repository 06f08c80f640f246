"""Clean reconstruction-error statistics (mu, sigma of eq. 7's per-image error) and their histogram.

The same held-out errors set the detector's thresholds (``models.detector``), stored beside mu and sigma.

The bucket edges are fixed and shared by every bundle so that the service's live
Prometheus histogram (one metric, a ``model`` label) uses exactly the same edges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from apudae.models.detector import Detector

# 10^-6 .. 10^0, four buckets per decade (25 upper edges; +Inf is implicit)
ERROR_BUCKETS: tuple[float, ...] = tuple(round(10 ** (k / 4), 10) for k in range(-24, 1))


@dataclass(frozen=True)
class Calibration:
    """mu, sigma: mean and standard deviation of the clean per-image reconstruction error (eq. 7)
    on held-out *training* images; ``counts[i]`` images had error <= ``edges[i]`` and > ``edges[i-1]``,
    ``counts[-1]`` those above the last edge; ``detector``: the thresholds of the detector on the same
    errors (None in a bundle calibrated before it existed: its flags are unavailable)."""

    mu: float
    sigma: float
    n: int
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    detector: Detector | None = None

    def z_score(self, error: torch.Tensor) -> torch.Tensor:
        """(error - mu) / sigma, elementwise."""
        return (error - self.mu) / self.sigma

    def p_value(self, error: torch.Tensor) -> torch.Tensor:
        """One-sided p-value P(E >= error) under N(mu, sigma^2): small means unlike clean images."""
        return 0.5 * torch.erfc(self.z_score(error) / math.sqrt(2))

    def to_dict(self) -> dict:
        d = {"mu": self.mu, "sigma": self.sigma, "n": self.n,
             "histogram": {"edges": list(self.edges), "counts": list(self.counts)}}
        if self.detector is not None:
            d["detector"] = self.detector.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        """Read ``to_dict``'s record; ``detector`` is optional (models.detector.DetectorError when malformed)."""
        hist = d["histogram"]
        detector = Detector.from_dict(d["detector"]) if "detector" in d else None
        return cls(float(d["mu"]), float(d["sigma"]), int(d["n"]), tuple(hist["edges"]), tuple(hist["counts"]),
                   detector)

    @classmethod
    def from_errors(cls, errors: torch.Tensor, edges: tuple[float, ...] = ERROR_BUCKETS) -> "Calibration":
        """Fit from per-image errors (N,), the detector's thresholds included. sigma is the population
        standard deviation."""
        if errors.numel() < 2:
            raise ValueError("calibration needs at least two images")
        errors = errors.double()
        bucket = torch.bucketize(errors, torch.tensor(edges, dtype=torch.float64), right=False)
        counts = torch.bincount(bucket, minlength=len(edges) + 1)
        return cls(errors.mean().item(), errors.std(unbiased=False).item(), errors.numel(),
                   tuple(edges), tuple(int(c) for c in counts), Detector.from_scores(errors))
