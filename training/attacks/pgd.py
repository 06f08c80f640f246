"""l_inf projected gradient descent (BIM/PGD, paper eq. 3; Madry et al. 2018)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def pgd_linf(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    epsilon: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Maximise cross-entropy within the l_inf ball of radius ``epsilon`` around ``x`` (eq. 3).

    x: (B, C, H, W) in [0, 1]; y: (B,) labels. Each step: x <- Clip_x^eps{x + alpha * sign(grad)},
    then clip to [0, 1]. ``random_start`` begins at a uniform point of the ball (Madry) instead of x (BIM).
    ``loss(adv, y) -> scalar`` replaces the default cross-entropy of ``model(adv)`` (counter-attack B,
    EOT losses through the defence); ``model`` is then unused.
    Returns the adversarial batch, detached, same shape as x.
    """
    x = x.detach()
    adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        adv = (x + epsilon * noise).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        value = F.cross_entropy(model(adv), y) if loss is None else loss(adv, y)
        (grad,) = torch.autograd.grad(value, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - epsilon), x + epsilon).clamp(0, 1)
    return adv.detach()
