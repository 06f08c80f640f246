"""Carlini-Wagner L2 (Carlini & Wagner 2017), clipped into the eps-ball as in the paper's eq. 4."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from training.attacks.base import Attack, AttackTarget


def _margin(logits: torch.Tensor, y: torch.Tensor, kappa: float) -> torch.Tensor:
    """f of eq. 4: max(Z_y - max_{i != y} Z_i, -kappa), (B,)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -torch.inf).amax(1)
    return (true - other).clamp_min(-kappa)


@dataclass
class CarliniWagnerL2(Attack):
    """min ||d||_2^2 + c * f(x + d) in tanh space with Adam, ``search_steps`` rounds of binary search on c
    per image (from ``initial_c``), ``steps`` Adam steps per round; the result is Clip_x^eps (eq. 4).

    Every ``check_every`` steps each image keeps the smallest-L2 candidate that still fools the classifier
    *after* the clip (the clip is part of eq. 4); images with none keep the clipped last iterate of the
    last round. Defaults (3 x 50 steps) are lighter than Carlini & Wagner's (9 x 1000) to fit 2 CPU cores.
    Shape: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W) in [0, 1] within eps.
    """

    steps: int = 50
    search_steps: int = 3
    check_every: int = 10
    initial_c: float = 1.0
    lr: float = 0.01
    kappa: float = 0.0

    def __post_init__(self):
        self.name = "cw"

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        b = x.shape[0]
        lower = torch.zeros(b, device=x.device)
        upper = torch.full((b,), torch.inf, device=x.device)
        c = torch.full((b,), self.initial_c, device=x.device)
        best, best_l2 = self.project(x, x), torch.full((b,), torch.inf, device=x.device)
        fallback = best
        w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        for _ in range(self.search_steps):
            w = w0.clone().requires_grad_(True)
            optimiser = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(b, dtype=torch.bool, device=x.device)
            for step in range(self.steps):
                with torch.enable_grad():
                    adv = (torch.tanh(w) + 1) / 2
                    l2 = (adv - x).pow(2).flatten(1).sum(1)
                    loss = (l2 + c * _margin(target.classifier(adv), y, self.kappa)).sum()
                    (w.grad,) = torch.autograd.grad(loss, w)  # no gradients on the classifier's weights
                optimiser.step()
                if (step + 1) % self.check_every and step + 1 < self.steps:
                    continue
                with torch.no_grad():
                    clipped = self.project(adv.detach(), x)
                    fooled = target.classifier(clipped).argmax(1) != y
                    better = fooled & (l2.detach() < best_l2)
                    best = torch.where(better.view(-1, 1, 1, 1), clipped, best)
                    best_l2 = torch.where(better, l2.detach(), best_l2)
                    succeeded |= fooled
            fallback = clipped
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isinf(upper), c * 10, (lower + upper) / 2)
        found = torch.isfinite(best_l2).view(-1, 1, 1, 1)
        return torch.where(found, best, fallback).detach()
