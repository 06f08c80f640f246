"""Carlini-Wagner L2 (Carlini & Wagner 2017), kept in the eps-ball as in the paper's eq. 4."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from apudae.training.attacks.base import Attack, AttackTarget


def _margin(logits: torch.Tensor, y: torch.Tensor, kappa: float) -> torch.Tensor:
    """f of eq. 4: max(Z_y - max_{i != y} Z_i, -kappa), (B,)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -torch.inf).amax(1)
    return (true - other).clamp_min(-kappa)


@dataclass
class CarliniWagnerL2(Attack):
    """min ||d||_2^2 + c * f(x + d) with Adam, ``search_steps`` rounds of binary search on c per image
    (from ``initial_c``), ``steps`` Adam steps per round.

    eq. 4 clips the result into the eps-ball. Clipping a finished L2 adversary afterwards mostly undoes
    it, and C&W's tanh change of variables freezes pixels at exactly 0 or 1 (tanh' vanishes there: most
    of an MNIST digit). So the box of eq. 4, [max(0, x - eps), min(1, x + eps)], is the tanh box itself:
    x_adv = low + (high - low) * (tanh(w) + 1) / 2, starting from its centre (w = 0). Every
    ``check_every`` steps each image keeps its smallest-L2 iterate that fools the classifier; images with
    none keep the last iterate of the last round. Defaults (3 x 50 steps) are lighter than C&W's
    (9 x 1000) to fit 2 CPU cores.
    Shape: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W) in [0, 1] within eps.
    """

    name = "cw"

    steps: int = 50
    search_steps: int = 3
    check_every: int = 10
    initial_c: float = 10.0
    lr: float = 0.1
    kappa: float = 0.0

    def generate(self, target: AttackTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        b = x.shape[0]
        lower = torch.zeros(b, device=x.device)
        upper = torch.full((b,), torch.inf, device=x.device)
        c = torch.full((b,), self.initial_c, device=x.device)
        best, best_l2 = x.clone(), torch.full((b,), torch.inf, device=x.device)
        fallback = best
        low, high = (x - self.epsilon).clamp(0, 1), (x + self.epsilon).clamp(0, 1)
        for _ in range(self.search_steps):
            w = torch.zeros_like(x).requires_grad_(True)
            optimiser = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(b, dtype=torch.bool, device=x.device)
            for step in range(self.steps):
                with torch.enable_grad():
                    adv = low + (high - low) * (torch.tanh(w) + 1) / 2
                    l2 = (adv - x).pow(2).flatten(1).sum(1)
                    loss = (l2 + c * _margin(target.classifier(adv), y, self.kappa)).sum()
                    (w.grad,) = torch.autograd.grad(loss, w)  # no gradients on the classifier's weights
                optimiser.step()
                if (step + 1) % self.check_every and step + 1 < self.steps:
                    continue
                with torch.no_grad():
                    current = adv.detach()
                    fooled = target.classifier(current).argmax(1) != y
                    better = fooled & (l2.detach() < best_l2)
                    best = torch.where(better.view(-1, 1, 1, 1), current, best)
                    best_l2 = torch.where(better, l2.detach(), best_l2)
                    succeeded |= fooled
            fallback = current
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isinf(upper), c * 10, (lower + upper) / 2)
        found = torch.isfinite(best_l2).view(-1, 1, 1, 1)
        return self.project(torch.where(found, best, fallback), x).detach()
