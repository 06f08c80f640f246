"""Decode and validate uploaded images into model input, and encode purified images as PNG.

Accepted formats: PNG, JPEG, GIF, BMP, TIFF, WebP. Conversions (documented in docs/SERVICE.md):

- 8-bit grey (``L``, ``1``) is divided by 255; 16-bit grey (``I;16*``, ``I``) by 65535;
- colour (``RGB``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``) goes to RGB through Pillow;
- palette (``P``) is expanded to RGB, or RGBA when it has transparency;
- transparency (``RGBA``, ``LA``, ``PA``, palette transparency) is flattened onto black;
- multi-frame images (animated GIF, multi-page TIFF) use their first frame;
- EXIF orientation is applied;
- RGB sent to a grey model becomes luma (ITU-R 601-2: 0.299 R + 0.587 G + 0.114 B);
  grey sent to a colour model is repeated over the three channels;
- 32-bit float images (``F``) are refused.

Images larger than ``max_pixels`` are refused before their pixels are decoded (decompression
bombs). A bundle that declares its preprocessing (photo bundles such as imagenet) takes any size:
the shorter side is resized and the centre cropped, keeping the aspect ratio, and an upload already
at the input size is taken as it is (``apudae.models.preprocessing``). Other bundles refuse a size
other than theirs unless ``resize`` is set, which stretches the image to the model's square size
(bilinear, antialiased). Every failure raises :class:`ImageError` with what to fix.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from apudae.models.preprocessing import Preprocessing

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)


class ImageError(ValueError):
    """An uploaded image cannot be used; the message says what to fix (HTTP 422)."""


@dataclass(frozen=True)
class DecodedImage:
    """``pixels``: (C, H, W) float32 in [0, 1] at the model's size; ``size``: the (width, height) a purified
    image is returned at: the upload's, or the model's crop for a bundle with declared preprocessing."""

    pixels: torch.Tensor
    size: tuple[int, int]


def decode_image(data: bytes, name: str, shape: tuple[int, int, int], resize: bool, max_pixels: int,
                 preprocessing: Preprocessing | None = None) -> DecodedImage:
    """Decode one upload for a model whose input is ``shape`` = (C, H, W), through the bundle's
    ``preprocessing`` when it declares one."""
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes); send a PNG or JPEG image")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image in a supported format ({', '.join(FORMATS)})") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: the image has too many pixels (at most {max_pixels})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # a recognised format with a damaged header
        raise _corrupt(name, err) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{name}: the image is {width}x{height} = {width * height} pixels; at most {max_pixels} allowed")
    try:
        image.seek(0)
        image = ImageOps.exif_transpose(image)
        array = _to_array(image, name)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        if isinstance(err, ImageError):
            raise
        raise _corrupt(name, err) from None
    pixels = _match_channels(torch.from_numpy(array).permute(2, 0, 1), shape[0])
    if preprocessing is not None:
        pixels = preprocessing(pixels)
        return DecodedImage(pixels, (pixels.shape[2], pixels.shape[1]))
    return DecodedImage(_match_size(pixels, shape, resize, name), (width, height))


def _corrupt(name: str, err: Exception) -> ImageError:
    return ImageError(f"{name}: the image is truncated or corrupt ({type(err).__name__}); send the whole file")


def _to_array(image: Image.Image, name: str) -> np.ndarray:
    """(H, W, 1 or 3) float32 in [0, 1], converted as the module docstring says."""
    mode = image.mode
    if mode == "F":
        raise ImageError(f"{name}: 32-bit float images are not supported; send an 8- or 16-bit image")
    if mode.startswith("I"):
        return (np.clip(np.asarray(image, dtype=np.float32), 0, 65535) / 65535)[..., None]
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("1", "La"):
        image = image.convert("L" if mode == "1" else "LA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in mode else "RGB")
    array = np.asarray(image, dtype=np.float32) / 255
    if array.ndim == 2:
        array = array[..., None]
    if image.mode in ("LA", "RGBA"):  # flatten onto black
        array = array[..., :-1] * array[..., -1:]
    return np.ascontiguousarray(array)


def _match_channels(pixels: torch.Tensor, channels: int) -> torch.Tensor:
    if pixels.shape[0] == channels:
        return pixels
    if channels == 1:
        return (pixels * LUMA).sum(dim=0, keepdim=True)
    return pixels.expand(channels, -1, -1).contiguous()


def _match_size(pixels: torch.Tensor, shape: tuple[int, int, int], resize: bool, name: str) -> torch.Tensor:
    height, width = shape[1:]
    if pixels.shape[1:] == (height, width):
        return pixels
    if not resize:
        raise ImageError(f"{name}: the image is {pixels.shape[2]}x{pixels.shape[1]} but the model expects "
                         f"{width}x{height}; resize it or pass resize=true")
    resized = F.interpolate(pixels[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].clamp(0, 1)


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """``pixels`` in [0, 1] (any shape) as the 8-bit levels round(255 x), uint8 on the CPU."""
    return (pixels.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)


def encode_png(pixels: torch.Tensor, size: tuple[int, int]) -> bytes:
    """PNG of ``pixels`` (C, H, W) in [0, 1]: ``L`` for one channel, ``RGB`` for three, at ``size`` (w, h)."""
    array = to_uint8(pixels).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array, mode="L" if array.shape[2] == 1 else "RGB")
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
