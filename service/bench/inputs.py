"""Bench inputs: 8-bit test images of a bundle's data set and adversarial-like versions of them.

"Adversarial-like" = the clean image plus random sign noise of size epsilon on every pixel (a corner of
the l_inf ball, eq. 1 of the paper with the extreme values of U(-eps, eps)), rounded to 8 bits like a PNG
upload. Such images sit far above the calibration mean mu, so variants E/F/G run all n steps on them,
as on PGD images, without paying for an attack. Robust accuracy (``service.bench.precision``) uses real
PGD images instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from models.bundle import Bundle
from service.imaging import encode_png
from training.data import DataNotFoundError, load_dataset

log = logging.getLogger(__name__)

#: l_inf budget per data set (the paper: 0.1 on MNIST-like data, 8/255 on CIFAR-10)
EPSILON = {"mnist": 0.1, "fashion-mnist": 0.1, "cifar10": 8 / 255}
DEFAULT_EPSILON = 0.1


@dataclass(frozen=True)
class BenchImages:
    """clean / adversarial: (N, C, H, W) float32 in [0, 1] on 8-bit levels; labels: (N,) int64 or None."""

    clean: torch.Tensor
    adversarial: torch.Tensor
    labels: torch.Tensor | None
    epsilon: float
    source: str


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] images to the 256 levels of an 8-bit PNG."""
    return images.clamp(0, 1).mul(255).round().div(255)


def bench_images(bundle: Bundle, count: int, data_dir: str | None, seed: int = 0) -> BenchImages:
    """The first ``count`` test images of the bundle's data set (uniform noise images when it has none)."""
    dataset = bundle.meta.get("provenance", {}).get("dataset", "")
    epsilon = EPSILON.get(dataset, DEFAULT_EPSILON)
    generator = torch.Generator().manual_seed(seed)
    try:
        test = load_dataset(dataset, "test", data_dir)
        clean, labels = test.floats()[:count], test.labels[:count]
        source = f"first {len(labels)} {dataset} test images"
    except (DataNotFoundError, ValueError) as err:
        log.info("bundle %s: no test data (%s); using uniform random images", bundle.name, err)
        clean = quantize(torch.rand(count, *bundle.input_shape, generator=generator))
        labels, source = None, f"{count} uniform random images (no {dataset or 'known'} test data)"
    signs = torch.randint(0, 2, clean.shape, generator=generator).float().mul(2).sub(1)
    adversarial = quantize(clean + epsilon * signs)
    return BenchImages(clean, adversarial, labels, epsilon, source)


def repeat_to(images: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` images cycling through ``images`` (N, C, H, W)."""
    index = torch.arange(count) % images.shape[0]
    return images[index]


def png_uploads(images: torch.Tensor) -> list[bytes]:
    """One 8-bit PNG per image (N, C, H, W), as a client would upload them."""
    return [encode_png(image, (image.shape[2], image.shape[1])) for image in images]
