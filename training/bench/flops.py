"""FLOPs of one purification of one image, counted by ``torch.utils.flop_counter.FlopCounterMode``.

The counter sees the aten ops that run (convolutions, their input-gradient backward — weight
gradients are not computed since the weights are frozen — and matmuls); elementwise work is not
counted, so the totals are the tensor-core/FMA work the machine's matmul peak speaks to.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from apudae.models.bundle import Bundle
from apudae.models.dae import reconstruction_error
from apudae.models.purification import PurifySettings, purify


class _NoModuleTracking:
    """Stands in for FlopCounterMode's per-module tracker, whose tensor hooks make
    ``torch.autograd.grad`` on a leaf input fail ("A leaf node was passed to _will_engine_execute_node"):
    the purifier differentiates w.r.t. leaf inputs. Everything is then counted under "Global"."""

    parents = {"Global"}

    def __enter__(self) -> "_NoModuleTracking":
        return self

    def __exit__(self, *exc) -> None:
        return None


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the ops ``fn`` runs (a multiply-add counts 2), forward and backward."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracking()
    with counter:
        fn()
    return int(counter.get_total_flops())


def dae_step(dae: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """One bare purification step: eq. 7's per-image error and its gradient w.r.t. the images."""
    with torch.inference_mode(False), torch.enable_grad():
        x = images.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(reconstruction_error(dae, x).sum(), x)
    return grad


def _classifier_flops(classifier: torch.nn.Module, image: torch.Tensor) -> int:
    """FLOPs of one forward of ``classifier`` on ``image`` (1, C, H, W), run where the classifier's weights
    are: the service classifies with ONNX, so the torch classifier stays on the CPU beside a CUDA DAE."""
    with torch.no_grad():
        return count_flops(lambda: classifier(image.to(next(classifier.parameters()).device)))


def purification_flops(bundle: Bundle, settings: PurifySettings, clean: torch.Tensor,
                       adversarial: torch.Tensor) -> dict:
    """FLOPs for one image (``clean``/``adversarial``: (1, C, H, W)) with ``settings``.

    ``ideal_per_image``: n x (DAE forward + input-gradient backward) + the classifier (one DAE forward
    for "direct"); ``adversarial_per_image`` / ``clean_per_image``: what ``purify`` plus the classifier
    actually run on that image, with the steps it took.
    """
    dae, classifier = bundle.dae, bundle.classifier
    with torch.no_grad():
        forward = count_flops(lambda: dae(adversarial))
    classify = _classifier_flops(classifier, adversarial)
    step = count_flops(lambda: dae_step(dae, adversarial))
    ideal = (forward if settings.variant == "direct" else settings.n * step) + classify
    counted = {"dae_forward": forward, "dae_step": step, "classifier": classify, "ideal_per_image": ideal}
    for kind, image in (("adversarial", adversarial), ("clean", clean)):
        result: list = []
        counted[f"{kind}_per_image"] = count_flops(
            lambda: result.append(purify(dae, image, bundle.calibration, settings))) + classify
        counted[f"{kind}_steps"] = int(result[0].steps.sum())
    return counted


def pool_flops(bundle: Bundle, settings: PurifySettings, clean: torch.Tensor, adversarial: torch.Tensor) -> dict:
    """Mean FLOPs and steps per image when each pool (N, C, H, W) is purified and classified as one batch.

    In a batch every step runs on the images still active, so these counts carry the early exits of the
    whole pool; ``clean_to_adversarial`` is the load-independent version of the clean-cost target.
    """
    classify = _classifier_flops(bundle.classifier, clean[:1])
    counted = {"batch": int(clean.shape[0])}
    for kind, images in (("adversarial", adversarial), ("clean", clean)):
        result: list = []
        total = count_flops(lambda: result.append(purify(bundle.dae, images, bundle.calibration, settings)))
        counted[f"{kind}_per_image"] = total / images.shape[0] + classify
        counted[f"{kind}_mean_steps"] = result[0].steps.float().mean().item()
    counted["clean_to_adversarial"] = counted["clean_per_image"] / counted["adversarial_per_image"]
    return counted
