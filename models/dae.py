"""The denoising autoencoder of the paper's Table 1 with the skip connections of eq. 6.

Encoder: Conv(k3, s2, p1, W)+ReLU+BN, then (N-1) x Conv(k3, s1, p1, W)+ReLU+BN.
Decoder: (N-1) x ConvTranspose(k3, s1, p1, W)+ReLU+BN, then
ConvTranspose(k3, s2, p1, c, output_padding=1) and a Sigmoid, so an input of
shape (B, c, H, W) with even H, W comes back as (B, c, H, W) in [0, 1].

Skip connections (eq. 6): with e_1..e_N the encoder maps and d_N = e_N,
each decoder layer i = N..2 gives d_{i-1} = F_dec,i(d_i) + e_{i-1}; the last
layer maps d_1 back to image space without a skip (adding the input image
itself would let the network learn the identity and defeat denoising).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DAEConfig:
    """Hyper-parameters of the DAE, saved with its weights.

    in_channels: c in Table 1 (1 for MNIST-like data, 3 for CIFAR-10).
    depth: N in Table 1 (5 for MNIST, 15 for CIFAR-10).
    width: feature maps per layer (64 in Table 1).
    dropout: dropout probability after each convolution (eq. 6's F_enc/F_dec).
    sigma_max: the largest training noise std, sigma ~ U[0, sigma_max] (eq. 5).
    """

    in_channels: int = 1
    depth: int = 5
    width: int = 64
    dropout: float = 0.0
    sigma_max: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def _block(conv: nn.Module, width: int, dropout: float) -> nn.Sequential:
    """Convolution, dropout, ReLU, BatchNorm — one row of Table 1."""
    return nn.Sequential(conv, nn.Dropout2d(dropout), nn.ReLU(inplace=True), nn.BatchNorm2d(width))


class DenoisingAutoEncoder(nn.Module):
    """DAE of Table 1 / eq. 6. ``forward``: (B, c, H, W) in [0, 1] -> same shape in [0, 1]."""

    def __init__(self, config: DAEConfig):
        super().__init__()
        if config.depth < 1:
            raise ValueError("DAE depth N must be at least 1")
        self.config = config
        c, w, p = config.in_channels, config.width, config.dropout
        self.encoder = nn.ModuleList(
            [_block(nn.Conv2d(c, w, 3, stride=2, padding=1), w, p)]
            + [_block(nn.Conv2d(w, w, 3, stride=1, padding=1), w, p) for _ in range(config.depth - 1)]
        )
        self.decoder = nn.ModuleList(
            [_block(nn.ConvTranspose2d(w, w, 3, stride=1, padding=1), w, p) for _ in range(config.depth - 1)]
        )
        self.head = nn.ConvTranspose2d(w, c, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = []
        h = x
        for layer in self.encoder:
            h = layer(h)
            encoded.append(h)  # e_1 .. e_N
        # decoder layer k (0-based) maps d_{N-k} to d_{N-k-1} and adds e_{N-k-1}
        for k, layer in enumerate(self.decoder):
            h = layer(h) + encoded[-2 - k]
        return torch.sigmoid(self.head(h))


def reconstruction_error(dae: nn.Module, x: torch.Tensor, dae_input: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image reconstruction error, dist of eq. 7 averaged over pixels: mean over c, H, W of
    (x - DAE(dae_input))^2, ``dae_input`` defaulting to x (the purifier's F/G feed the DAE a noisy x).

    x, dae_input: (B, c, H, W) in [0, 1] -> (B,). Per-image means keep images independent (BatchNorm is
    in eval mode).
    """
    return (x - dae(x if dae_input is None else dae_input)).pow(2).flatten(1).mean(dim=1)


def add_training_noise(x: torch.Tensor, sigma_max: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noisy DAE input of eq. 5: X + sigma * N(0, 1) with sigma ~ U[0, sigma_max] drawn per image.

    x: (B, c, H, W). Returns a tensor of the same shape (not clipped, as in eq. 5).
    """
    sigma = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype) * sigma_max
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + sigma * noise
