"""The declared preprocessing against torchvision's reference transform (Resize of the shorter side + CenterCrop)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import v2

from apudae.models.preprocessing import Preprocessing

IMAGENET = Preprocessing(resize=256, crop=224, interpolation="bicubic")


def _photo(width: int, height: int) -> Image.Image:
    """A smooth photo-like RGB image: colour gradients and a disc."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 4) ** 2).astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.3 + 0.5 * disc], axis=2)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def _tensor(image: Image.Image) -> torch.Tensor:
    return transforms.functional.to_tensor(image)


@pytest.mark.parametrize("size", [(640, 480), (300, 1000), (250, 250), (121, 68)])
def test_equals_torchvisions_reference_transform_on_the_tensor(size):
    reference = v2.Compose([v2.Resize(256, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                            v2.CenterCrop(224)])
    pixels = _tensor(_photo(*size))
    assert IMAGENET(pixels).shape == (3, 224, 224)
    torch.testing.assert_close(IMAGENET(pixels), reference(pixels).clamp(0, 1))


def test_is_close_to_the_pil_reference_transform():
    image = _photo(640, 480)
    pil_reference = transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                                        transforms.CenterCrop(224), transforms.ToTensor()])
    difference = (IMAGENET(_tensor(image)) - pil_reference(image)).abs()
    assert difference.mean() < 0.005 and difference.max() < 0.05


def test_keeps_the_aspect_ratio():
    """A disc in a wide photo stays a disc: as tall as it is wide after the crop (no stretching)."""
    out = IMAGENET(_tensor(_photo(800, 400)))
    disc = out[2] > 0.55
    rows, cols = disc.any(dim=1).sum().item(), disc.any(dim=0).sum().item()
    assert abs(rows - cols) <= 2


def test_an_image_at_the_input_size_is_taken_as_it_is():
    pixels = torch.rand(3, 224, 224)
    assert IMAGENET(pixels) is pixels


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown interpolation"):
        Preprocessing(256, 224, "lanczos9")
    with pytest.raises(ValueError, match="at most the resize"):
        Preprocessing(200, 224)
