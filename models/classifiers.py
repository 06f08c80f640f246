"""Classifiers whose input is an image in [0, 1]; normalisation happens inside.

Named factories (``build_classifier``) over a config dataclass, as torchvision does:
``mnist_cnn`` for 28x28 grey images, ``resnet9`` (the DAWNBench ResNet-9 of
Page 2018, width-scaled) for 32x32 colour images.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ClassifierConfig:
    """arch: "mnist_cnn" or "resnet9"; width: channels of the first stage;
    mean/std: per-channel normalisation applied inside the model;
    flip_average: in eval mode, average the logits of the image and its left-right mirror
    (test-time augmentation without extra weights; training is unaffected)."""

    arch: str = "mnist_cnn"
    in_channels: int = 1
    num_classes: int = 10
    width: int = 32
    mean: tuple[float, ...] = field(default=(0.5,))
    std: tuple[float, ...] = field(default=(0.5,))
    flip_average: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})


class Normalize(nn.Module):
    """(x - mean) / std per channel; x: (B, C, H, W) in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + f(x)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def _mnist_cnn(cfg: ClassifierConfig) -> nn.Sequential:
    w = cfg.width
    return nn.Sequential(
        _conv_bn(cfg.in_channels, w),
        _conv_bn(w, w, pool=True),  # 14x14
        _conv_bn(w, 2 * w),
        _conv_bn(2 * w, 2 * w, pool=True),  # 7x7
        nn.Flatten(),
        nn.Linear(2 * w * 7 * 7, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Linear(256, cfg.num_classes),
    )


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _resnet9(cfg: ClassifierConfig) -> nn.Sequential:
    w = cfg.width
    return nn.Sequential(
        _conv_bn(cfg.in_channels, w),
        _conv_bn(w, 2 * w, pool=True),  # 16x16
        Residual(nn.Sequential(_conv_bn(2 * w, 2 * w), _conv_bn(2 * w, 2 * w))),
        _conv_bn(2 * w, 4 * w, pool=True),  # 8x8
        _conv_bn(4 * w, 8 * w, pool=True),  # 4x4
        Residual(nn.Sequential(_conv_bn(8 * w, 8 * w), _conv_bn(8 * w, 8 * w))),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8 * w, cfg.num_classes, bias=False),
        _Scale(0.125),
    )


_ARCHITECTURES = {"mnist_cnn": _mnist_cnn, "resnet9": _resnet9}


class ImageClassifier(nn.Module):
    """Normalise then classify. forward: (B, C, H, W) float in [0, 1] -> (B, num_classes) logits."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        if config.arch not in _ARCHITECTURES:
            raise ValueError(f"unknown classifier arch {config.arch!r}; choose one of {sorted(_ARCHITECTURES)}")
        self.config = config
        self.normalize = Normalize(config.mean, config.std)
        self.net = _ARCHITECTURES[config.arch](config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(self.normalize(x))
        if self.config.flip_average and not self.training:
            logits = (logits + self.net(self.normalize(x.flip(3)))) / 2
        return logits
