"""The purification loop shared by the gradient variants A-G (the paper's Algorithm 1 and eq. 8-13).

A variant only says what differs: its loss of the per-image error (``loss``), whether it uses
momentum, its step size (``step_size``), the DAE's input (``dae_input``, noise for F/G) and the start
point (``start``, a random transform for G). ``IterativePurifier`` owns the rest: per-image losses,
momentum, the step rule, clipping to [0, 1], early exit of images whose loss is zero (with
``settings.carry``, only those that never moved: a moved image keeps its momentum), step counts, and a
differentiable mode in which gradients flow through every step (for the adaptive attacks).
"""
from __future__ import annotations

import torch
from torch import nn

from apudae.models.calibration import Calibration
from apudae.models.dae import reconstruction_error
from apudae.models.purification.randomness import NoiseSource
from apudae.models.purification.settings import PurificationResult, PurifySettings


class Purifier:
    """Base of every variant. ``run(images, differentiable)`` -> (purified (B, C, H, W), steps (B,))."""

    def __init__(self, dae: nn.Module, calibration: Calibration, settings: PurifySettings):
        self.dae, self.calibration, self.settings = dae, calibration, settings

    def run(self, x: torch.Tensor, differentiable: bool = False, error: torch.Tensor | None = None,
            noise: NoiseSource | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``error``: eq. 7's per-image error of ``x`` (B,) when the caller has it; saves a DAE forward.
        ``noise``: the random draws for x's rows (default: ``NoiseSource(x, settings.seed)``)."""
        raise NotImplementedError

    def purify(self, images: torch.Tensor, noise: NoiseSource | None = None) -> PurificationResult:
        """Purify ``images`` (B, C, H, W) in [0, 1] without building a graph; see ``PurificationResult``."""
        x = images.detach().clone().float()
        with torch.no_grad():
            before = reconstruction_error(self.dae, x)
        out, steps = self.run(x, error=before, noise=noise)
        out = out.detach().to(x.dtype)  # float32 even when the DAE output itself is the result (direct, autocast)
        after = before.clone()
        changed = (steps > 0) | self.always_changes
        if changed.any():
            with torch.no_grad():
                after[changed] = reconstruction_error(self.dae, out[changed])
        return PurificationResult(out, before, after, steps)

    #: True when the output differs from the input even after zero steps (direct, G's transform)
    always_changes = False


class IterativePurifier(Purifier):
    """X_{i+1} = clip_[0,1](X_i - alpha_i * step(w_i)), w_i = beta * w_{i-1} + (1 - beta) * dL/dX_i."""

    uses_momentum = True

    def loss(self, dist: torch.Tensor) -> torch.Tensor:
        """Per-image loss (B,) of the per-image error dist (B,); zero means the image is done."""
        raise NotImplementedError

    def step_size(self, dist: torch.Tensor) -> torch.Tensor | float:
        """Per-image step size (B,), or alpha itself when every image takes the same (all but C)."""
        return self.settings.alpha

    def dae_input(self, x: torch.Tensor, rows: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        """What the DAE sees at a step: X itself unless the variant adds noise (F, G)."""
        return x

    def start(self, x: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        """X_pur,0: the input unless the variant transforms it first (G)."""
        return x

    def _direction(self, w: torch.Tensor) -> torch.Tensor:
        if self.settings.step == "sign":
            return w.sign()
        peak = w.abs().flatten(1).amax(dim=1).clamp_min(1e-12)
        return w / peak.view(-1, 1, 1, 1)

    def run(self, x: torch.Tensor, differentiable: bool = False, error: torch.Tensor | None = None,
            noise: NoiseSource | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if noise is None:
            noise = NoiseSource(x, self.settings.seed)
        start = self.start(x, noise)
        if error is None or start is not x:  # G's transform moved the start: its error is new
            with torch.no_grad():
                error = reconstruction_error(self.dae, start)
        x = start
        active = self.loss(error) > 0  # images already done take no step
        beta = self.settings.beta if self.uses_momentum else 0.0
        momentum = torch.zeros_like(x)
        steps = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        for _ in range(self.settings.n):
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            # every image still in the loop (the common case): no gather and scatter of x and momentum
            whole = rows.numel() == x.shape[0]
            sub = x if whole else x.index_select(0, rows)
            if not (differentiable and sub.requires_grad):
                sub = sub.detach().requires_grad_(True)
            dist = reconstruction_error(self.dae, sub, self.dae_input(sub, rows, noise))
            loss = self.loss(dist)
            moving = (loss > 0).detach()
            if self.settings.carry and beta > 0:  # eq. 9-13: a nonzero momentum keeps moving the image
                moving |= steps.index_select(0, rows) > 0
            if not moving.any():  # every remaining image is done: skip the backward of a step nobody takes
                break
            # sign(w) has zero derivative, so its second-order graph would only ever be multiplied by 0
            second_order = differentiable and self.settings.step != "sign"
            (grad,) = torch.autograd.grad(loss.sum(), sub, create_graph=second_order)
            w = beta * (momentum if whole else momentum.index_select(0, rows)) + (1 - beta) * grad
            alpha = self.step_size(dist)
            if torch.is_tensor(alpha):
                alpha = alpha.view(-1, 1, 1, 1)
            new = (sub - alpha * self._direction(w)).clamp(0, 1)
            new = torch.where(moving.view(-1, 1, 1, 1), new, sub)
            if not differentiable:
                new, w = new.detach(), w.detach()
            x = new if whole else x.index_copy(0, rows, new)
            momentum = w if whole else momentum.index_copy(0, rows, w)
            steps.index_add_(0, rows, moving.long())
            active.index_copy_(0, rows, moving)  # an image that did not move is done
        return x, steps
