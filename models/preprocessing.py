"""A bundle's declared preprocessing: how an image of any size becomes the model's input.

``bundle.json`` holds it under ``"preprocessing"``, e.g. ImageNet's
``{"resize": 256, "crop": 224, "interpolation": "bicubic"}``: the shorter side is resized to
``resize`` keeping the aspect ratio (antialiased), then the centre ``crop`` x ``crop`` is cut out,
as torchvision's ``Resize(256)`` + ``CenterCrop(224)`` reference transform does. An image already at
the model's input size is taken as it is, so an image attacked at that size reaches the purifier
unchanged. Bundles without the entry (the 28x28 and 32x32 ones) take only their own size.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}


@dataclass(frozen=True)
class Preprocessing:
    """resize: target of the shorter side in pixels; crop: side of the centre square cut after it;
    interpolation: one of INTERPOLATIONS."""

    resize: int
    crop: int
    interpolation: str = "bicubic"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; choose one of {sorted(INTERPOLATIONS)}")
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"the crop ({self.crop}) must be positive and at most the resize ({self.resize})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Preprocessing | None":
        return None if d is None else cls(**d)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """(C, H, W) float in [0, 1] of any size -> (C, crop, crop) float in [0, 1].

        An image already crop x crop is returned as it is."""
        if tuple(pixels.shape[1:]) == (self.crop, self.crop):
            return pixels
        resized = TF.resize(pixels, [self.resize], interpolation=INTERPOLATIONS[self.interpolation], antialias=True)
        return TF.center_crop(resized, [self.crop, self.crop]).clamp(0, 1)
