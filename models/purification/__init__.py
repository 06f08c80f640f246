"""Adversarial purification with a DAE: the paper's variants "direct" and A-G (eq. 8-13).

``purify`` is what the service runs; ``purify_unrolled`` is the same loop with gradients flowing through
every step (create_graph), for the adaptive attacks that attack purify + classify end to end.
"""
from __future__ import annotations

import torch
from torch import nn

from apudae.models.calibration import Calibration
from apudae.models.purification.randomness import NoiseSource
from apudae.models.purification.settings import STEP_RULES, VARIANTS, PurificationResult, PurifySettings
from apudae.models.purification.variants import PURIFIERS

__all__ = ["purify", "purify_unrolled", "NoiseSource", "PurifySettings", "PurificationResult", "VARIANTS",
           "STEP_RULES"]


def _device_of(dae: nn.Module, images: torch.Tensor) -> torch.device:
    param = next(dae.parameters(), None)
    return images.device if param is None else param.device


def purify(dae: nn.Module, images: torch.Tensor, calibration: Calibration,
           settings: PurifySettings, noise: NoiseSource | None = None) -> PurificationResult:
    """Purify a batch with ``settings.variant``.

    dae: the bundle's DAE in eval mode (its weights get no gradients); images: (B, C, H, W) float in
    [0, 1] on any device (moved to the DAE's device; results come back on the images' device).
    Safe to call under ``torch.inference_mode()``/``no_grad()``: the loop needs input gradients and
    switches them on for itself. ``noise``: the F/G draws for the rows of ``images``, on the DAE's
    device (default: from ``settings.seed``; ``NoiseSource.for_draws`` batches several seeds' draws).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    with torch.inference_mode(False), torch.enable_grad():
        x = images.to(_device_of(dae, images)).clone()
        result = PURIFIERS[settings.variant](dae, calibration, settings).purify(x, noise)
    return PurificationResult(*(t.to(images.device) for t in
                                (result.images, result.error_before, result.error_after, result.steps)))


def purify_unrolled(dae: nn.Module, images: torch.Tensor, calibration: Calibration,
                    settings: PurifySettings, noise: NoiseSource | None = None) -> torch.Tensor:
    """Purified images (B, C, H, W) as a differentiable function of ``images``: the same steps as
    ``purify`` (same early exits, same ``noise``) with the graph kept through all n steps (create_graph=True).

    Note: with ``settings.step == "sign"`` each step's direction is piecewise constant (zero derivative),
    so the exact gradient flows only through the identity path, the [0, 1] clipping and G's transform,
    and the loop skips building the second-order graph it would multiply by zero; the "linf" rule
    keeps it (create_graph) and passes second-order terms through the DAE.
    """
    purifier = PURIFIERS[settings.variant](dae, calibration, settings)
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():  # the loop needs input gradients even where the caller predicts under no_grad
        out, _ = purifier.run(images, differentiable=keep_graph, noise=noise)
    return out if keep_graph else out.detach()
