"""Purification settings (the paper's n, alpha, beta, gamma and G's transform ranges) and results."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

#: the paper's purification variants; ``variants.PURIFIERS`` maps each to its class
VARIANTS: tuple[str, ...] = ("direct", "A", "B", "C", "D", "E", "F", "G")
STEP_RULES: tuple[str, ...] = ("sign", "linf")


@dataclass(frozen=True)
class PurifySettings:
    """How to purify: which variant of the paper and its parameters.

    variant: "direct" (X_pur = DAE(X)) or "A".."G" (eq. 8-13, see ``models.purification.variants``).
    n: the most update steps per image (the paper uses n = 15).
    alpha: per-pixel step size. The paper's values (MNIST alpha = 0.01, CIFAR-10 alpha = 1/255, both with
        n = 15 against eps = 0.1 and 8/255) only make sense as a per-pixel step: eq. 7's error averaged
        over pixels has gradients of order 1e-4, so a raw gradient step of 0.01 would move nothing.
        ``step`` says how the (momentum) gradient w becomes a step of at most alpha per pixel.
    step: "sign" (X <- X - alpha * sign(w), every pixel moves alpha, as in FGSM/BIM) or "linf"
        (X <- X - alpha * w / max|w|, the largest pixel moves alpha).
    beta: momentum of eq. 9-13, w_i = beta * w_{i-1} + (1 - beta) * grad (A uses none).
    gamma: std of the Gaussian noise added to the DAE's input at each step (F, G: eq. 12, 13).
    scale, rotation: G's random transform (eq. 13): zoom factor f ~ U[scale] and angle
        theta ~ U[-rotation, rotation] degrees, drawn per image.
    carry: what an image does once its loss reaches zero after it has moved (E/F/G, the variants whose loss
        can reach zero). True (the paper's eq. 9-13 as written): w_i = beta * w_{i-1} keeps stepping it along
        its momentum for the rest of the n steps, so an image that starts above mu runs all n steps. False:
        it leaves the loop at once (cheaper, and stops just under mu). Either way an image that starts under
        mu has no momentum and takes no step.
    seed: None for fresh randomness; an int makes F and G repeatable: each image's noise comes from its
        own generator seeded by (seed, the image's 8-bit content), so a batch gives the same results as
        the same images one at a time.
    """

    variant: str = "F"
    n: int = 15
    alpha: float = 0.01
    step: str = "sign"
    beta: float = 0.9
    gamma: float = 0.05
    scale: tuple[float, float] = (0.9, 1.1)
    rotation: float = 10.0
    carry: bool = True
    seed: int | None = None

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown purification variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.step not in STEP_RULES:
            raise ValueError(f"unknown step rule {self.step!r}; choose one of {', '.join(STEP_RULES)}")
        if self.n < 0 or self.alpha < 0 or self.gamma < 0 or self.rotation < 0:
            raise ValueError("n, alpha, gamma and rotation must be >= 0")
        if not 0 <= self.beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {self.beta}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be a range 0 < low <= high, got {self.scale}")

    @classmethod
    def from_defaults(cls, defaults: dict, **overrides) -> "PurifySettings":
        """Settings from a bundle's ``purification`` dict, then ``overrides``; None overrides are ignored,
        unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        merged = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"unknown purification settings {unknown}; known: {sorted(known)}")
        if "scale" in merged:
            merged["scale"] = tuple(merged["scale"])
        return cls(**merged)


@dataclass
class PurificationResult:
    """images: (B, C, H, W) float32 in [0, 1], the purified images;
    error_before / error_after: (B,) eq. 7 reconstruction error (mean over pixels) of the input and the output;
    steps: (B,) int64, update steps each image actually took (0 for images already under mu in E/F/G)."""

    images: torch.Tensor
    error_before: torch.Tensor
    error_after: torch.Tensor
    steps: torch.Tensor
