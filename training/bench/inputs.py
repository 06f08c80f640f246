"""Bench inputs: 8-bit test images of a bundle's data set and adversarial versions of them.

Adversarial = grey-box PGD on the bundle's classifier (l_inf eps of the data set, ``PGD_STEPS`` steps of
eps/8, random start, seed 0), rounded to 8 bits like a PNG upload: the inputs the purifier exists for,
with the steps it really takes on them. A bundle without labelled test data (the tests' tiny bundle)
gets uniform random images and, as adversarial, those images plus random sign noise of size eps on
every pixel (a corner of the l_inf ball).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import torch

from apudae.models.bundle import Bundle
from apudae.service.imaging import encode_png
from apudae.training.attacks.base import quantize_8bit
from apudae.training.attacks.pgd import pgd_linf
from apudae.training.data import DataNotFoundError, load_dataset, photo_files

log = logging.getLogger(__name__)

#: l_inf budget per data set (the paper: 0.1 on MNIST-like data, 8/255 on CIFAR-10, 5/255 on ImageNet)
EPSILON = {"mnist": 0.1, "fashion-mnist": 0.1, "cifar10": 8 / 255, "imagenet": 5 / 255}
DEFAULT_EPSILON = 0.1
PGD_STEPS = 20
PGD_BATCH = 32  # images attacked at once: the attack's memory at 224x224 grows with the batch


@dataclass(frozen=True)
class BenchImages:
    """clean / adversarial: (N, C, H, W) float32 in [0, 1] on 8-bit levels; labels: (N,) int64 or None;
    source / attack: where the clean images come from and how the adversarial ones were made."""

    clean: torch.Tensor
    adversarial: torch.Tensor
    labels: torch.Tensor | None
    epsilon: float
    source: str
    attack: str

    def first(self, count: int) -> "BenchImages":
        """The first ``count`` images."""
        labels = None if self.labels is None else self.labels[:count]
        return BenchImages(self.clean[:count], self.adversarial[:count], labels, self.epsilon, self.source,
                           self.attack)


def bench_images(bundle: Bundle, count: int, data_dir: str | None, seed: int = 0) -> BenchImages:
    """The first ``count`` test images of the bundle's data set and their PGD versions (see the module)."""
    dataset = bundle.meta.get("provenance", {}).get("dataset", "")
    epsilon = EPSILON.get(dataset, DEFAULT_EPSILON)
    generator = torch.Generator().manual_seed(seed)
    try:
        test = load_dataset(dataset, "test", data_dir)
        clean, labels = test.floats()[:count], test.labels[:count]
        source = f"first {len(labels)} {dataset} test images"
    except (DataNotFoundError, ValueError) as err:
        log.info("bundle %s: no test data (%s); using uniform random images", bundle.name, err)
        clean = quantize_8bit(torch.rand(count, *bundle.input_shape, generator=generator))
        labels, source = None, f"{count} uniform random images (no {dataset or 'known'} test data)"
    if labels is None:
        signs = torch.randint(0, 2, clean.shape, generator=generator).float().mul(2).sub(1)
        return BenchImages(clean, quantize_8bit(clean + epsilon * signs), None, epsilon, source,
                           f"random sign noise ±{epsilon:.4g} per pixel, 8-bit")
    adversarial = torch.cat([quantize_8bit(pgd_linf(bundle.classifier, images, targets, epsilon, epsilon / 8,
                                                    PGD_STEPS, generator=generator))
                             for images, targets in zip(clean.split(PGD_BATCH), labels.split(PGD_BATCH))])
    return BenchImages(clean, adversarial, labels, epsilon, source,
                       f"grey-box PGD-{PGD_STEPS} on the classifier, eps={epsilon:.4g}, step eps/8, random start, "
                       "seed 0, 8-bit")


def photo_uploads(bundle: Bundle, count: int, data_dir: str | None) -> tuple[list[bytes], str]:
    """The original files (JPEG, full size) of the first ``count`` test images of a photo bundle's data set,
    as a client uploads them for the service to resize and crop, and where they come from."""
    dataset = bundle.meta.get("provenance", {}).get("dataset", "")
    files = photo_files(dataset, "test", data_dir)[:count]
    return [f.read_bytes() for f in files], f"the first {len(files)} {dataset} test photos as files (JPEG, full size)"


def repeat_to(images: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` images cycling through ``images`` (N, C, H, W)."""
    index = torch.arange(count) % images.shape[0]
    return images[index]


def tensor_request(images: torch.Tensor, parameters: dict | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one Open Inference Protocol inference request that sends ``images``
    (N, C, H, W) in [0, 1] as a UINT8 tensor in binary (the binary tensor data extension), every output
    asked back as binary data, with the request ``parameters`` (purification options)."""
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    header = json.dumps({"inputs": [{"name": "images", "shape": list(pixels.shape), "datatype": "UINT8",
                                     "parameters": {"binary_data_size": pixels.nbytes}}],
                         "parameters": {**(parameters or {}), "binary_data_output": True}}).encode()
    return header + pixels.tobytes(), {"Content-Type": "application/octet-stream",
                                       "Inference-Header-Content-Length": str(len(header))}


def png_uploads(images: torch.Tensor) -> list[bytes]:
    """One 8-bit PNG per image (N, C, H, W), as a client would upload them."""
    return [encode_png(image, (image.shape[2], image.shape[1])) for image in images]
