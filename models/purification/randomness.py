"""Per-image randomness for the purifier: noise (eq. 12) and random transforms (eq. 13).

With a seed, every image owns a generator seeded by (seed, its 8-bit content), so an image gets the same
noise whether it is purified alone or in any batch, and whatever the other images do.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class NoiseSource:
    """Random draws for the rows of a batch. ``images``: (B, C, H, W) in [0, 1]; ``seed``: None or int."""

    def __init__(self, images: torch.Tensor, seed: int | None):
        self.device = images.device
        self.generators: list[torch.Generator] | None = None
        if seed is not None:
            self.generators = [self._generator(seed, content) for content in _contents(images)]

    @classmethod
    def for_draws(cls, images: torch.Tensor, seeds: Sequence[int]) -> "NoiseSource":
        """The source for ``images`` (B, C, H, W) repeated len(seeds) times along the batch: rows
        k*B .. (k+1)*B - 1 draw exactly what ``NoiseSource(images, seeds[k])`` would, so one batched
        purification gives the same result as one purification per seed (the EOT draws of the adaptive
        attacks)."""
        source = cls(images, None)
        contents = _contents(images)
        source.generators = [source._generator(seed, content) for seed in seeds for content in contents]
        return source

    def _generator(self, seed: int, content: bytes) -> torch.Generator:
        digest = hashlib.blake2b(content, digest_size=8, key=str(seed).encode()).digest()
        return torch.Generator(device=self.device).manual_seed(int.from_bytes(digest, "little") >> 1)

    def _draw(self, fn, rows: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if self.generators is None:
            return fn((rows.numel(), *shape), device=self.device, dtype=dtype)
        return torch.stack([fn(shape, generator=self.generators[r], device=self.device, dtype=dtype)
                            for r in rows.tolist()]) if rows.numel() else torch.empty(0, *shape, device=self.device)

    def normal(self, rows: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """(len(rows), *shape) standard normal draws, row k from image rows[k]'s stream."""
        return self._draw(torch.randn, rows, shape, dtype)

    def uniform(self, rows: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """(len(rows), *shape) U[0, 1) draws, row k from image rows[k]'s stream."""
        return self._draw(torch.rand, rows, shape, dtype)


def _contents(images: torch.Tensor) -> list[bytes]:
    """Each image's 8-bit pixels as bytes, the content half of its generator's key."""
    pixels = images.detach().mul(255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return [image.tobytes() for image in pixels]


def random_resize_rotate(x: torch.Tensor, noise: NoiseSource, scale: tuple[float, float],
                         rotation: float) -> torch.Tensor:
    """t(X, f, theta) of eq. 13: zoom each image by f ~ U[scale] and rotate it by theta ~ U[-rotation,
    rotation] degrees about its centre, keeping its size (bilinear, border padding). Differentiable in x.

    x: (B, C, H, W) in [0, 1] -> (B, C, H, W) in [0, 1].
    """
    rows = torch.arange(x.shape[0], device=x.device)
    u = noise.uniform(rows, (2,), x.dtype)
    f = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    theta = (2 * u[:, 1] - 1) * math.radians(rotation)
    cos, sin = torch.cos(theta) / f, torch.sin(theta) / f
    zero = torch.zeros_like(f)
    matrix = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)
