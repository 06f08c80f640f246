"""A MagNet-style detector beside the purifier: flag an input whose reconstruction error (eq. 7, the mean
squared difference between the image and DAE(image), before purification) is above a threshold set on
clean held-out *training* images at a fixed false-positive rate.

The statistic was chosen by measurement against the purifier's other outputs (error after purification,
its reduction, the steps taken): docs/DETECTION.md. It costs one DAE pass, which every purification
already makes, and it is deterministic, so a flag does not depend on the purifier's noise or settings.

The thresholds live in bundle.json under ``calibration.detector`` (``Detector.to_dict``, versioned by
``format_version``); a bundle calibrated before the detector existed has none, and its flags are
unavailable (``Calibration.detector`` is None).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: the false-positive rates every calibration stores a threshold for (0.1 %, 1 %, 5 % of clean images)
FPRS: tuple[float, ...] = (0.001, 0.01, 0.05)
#: the false-positive rate used when a caller names none
DEFAULT_FPR = 0.01
FORMAT_VERSION = 1
STATISTIC = "error_before"  # eq. 7's per-image error of the input, before purification


class DetectorError(ValueError):
    """A detector record that cannot be read, or a false-positive rate it has no threshold for."""


def threshold_at(scores: torch.Tensor, fpr: float) -> float:
    """The threshold t that flags (score > t) at most floor(fpr * N) of the N clean ``scores``: the
    (N - floor(fpr * N))-th smallest score. scores: (N,) float, N >= 1; fpr in [0, 1).

    Ties at t stay unflagged, so the clean share flagged is at most ``fpr``, and below it when
    fpr * N is not a whole number: on N = 100 scores 1..100, fpr 0.05 gives t = 95 (5 flagged),
    fpr 0.001 gives t = 100 (none)."""
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"scores must be a non-empty (N,) tensor, got shape {tuple(scores.shape)}")
    if not 0 <= fpr < 1:
        raise ValueError(f"a false-positive rate is in [0, 1), got {fpr}")
    allowed = math.floor(fpr * scores.numel() + 1e-9)  # images that may lie above t
    return float(scores.double().sort().values[scores.numel() - 1 - allowed])


def _by_rate(values: dict[float, float]) -> dict[str, float]:
    """JSON keys for a rate -> value mapping: the rates as "0.001", "0.01", ..., smallest first."""
    return {f"{rate:g}": value for rate, value in sorted(values.items())}


@dataclass(frozen=True)
class Detector:
    """thresholds: false-positive rate -> threshold on the statistic (eq. 7's error, >= 0); n: the clean
    held-out training images they were set on; holdout_flagged: rate -> the share of those n images the
    threshold flags (at most the rate, see ``threshold_at``)."""

    thresholds: dict[float, float]
    n: int
    holdout_flagged: dict[float, float]
    statistic: str = STATISTIC

    @classmethod
    def from_scores(cls, scores: torch.Tensor, fprs: tuple[float, ...] = FPRS) -> "Detector":
        """Thresholds at ``fprs`` from the clean held-out scores (N,)."""
        thresholds = {fpr: threshold_at(scores, fpr) for fpr in fprs}
        flagged = {fpr: float((scores.double() > t).double().mean()) for fpr, t in thresholds.items()}
        return cls(thresholds, int(scores.numel()), flagged)

    @property
    def rates(self) -> tuple[float, ...]:
        """The stored false-positive rates, smallest first."""
        return tuple(sorted(self.thresholds))

    def threshold(self, fpr: float) -> float:
        """The threshold at ``fpr``; DetectorError naming the stored rates for any other rate."""
        if fpr not in self.thresholds:
            raise DetectorError(f"no threshold at false-positive rate {fpr:g}; choose one of "
                                f"{', '.join(f'{r:g}' for r in self.rates)}")
        return self.thresholds[fpr]

    def flags(self, scores: torch.Tensor, fpr: float) -> torch.Tensor:
        """(B,) bool: which of the scores (B,) (eq. 7's error of each input) are above the threshold at ``fpr``."""
        return scores > self.threshold(fpr)

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "statistic": self.statistic, "n": self.n,
                "thresholds": _by_rate(self.thresholds), "holdout_flagged": _by_rate(self.holdout_flagged)}

    @classmethod
    def from_dict(cls, d: dict) -> "Detector":
        """Read ``to_dict``'s record; DetectorError saying what is wrong with any other."""
        if not isinstance(d, dict) or d.get("format_version") != FORMAT_VERSION:
            version = d.get("format_version") if isinstance(d, dict) else None
            raise DetectorError(f"detector format_version {version!r} is not {FORMAT_VERSION}; re-calibrate the "
                                "bundle with `apudae calibrate-detector --bundle <dir>`")
        if d.get("statistic") != STATISTIC:
            raise DetectorError(f"unknown detector statistic {d.get('statistic')!r}; this version reads {STATISTIC!r}")
        try:
            thresholds = {float(rate): float(t) for rate, t in d["thresholds"].items()}
            flagged = {float(rate): float(s) for rate, s in d["holdout_flagged"].items()}
            n = int(d["n"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DetectorError(f"detector record is incomplete or malformed ({type(err).__name__}: {err})") from None
        if not thresholds or any(not 0 <= rate < 1 for rate in thresholds) or set(flagged) != set(thresholds):
            raise DetectorError("detector thresholds must be keyed by rates in [0, 1), with holdout_flagged for each")
        if DEFAULT_FPR not in thresholds:
            raise DetectorError(f"detector thresholds must include the default false-positive rate {DEFAULT_FPR:g}")
        if any(not math.isfinite(t) or t < 0 for t in thresholds.values()) or n < 1:
            raise DetectorError("detector thresholds must be finite errors >= 0, set on n >= 1 images")
        return cls(thresholds, n, flagged)
