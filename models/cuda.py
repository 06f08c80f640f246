"""CUDA numerics for purification: repeatable results, whatever the batch."""
from __future__ import annotations

import torch


def make_cuda_reproducible(device: torch.device) -> None:
    """On a CUDA ``device``, switch this process to cuDNN's deterministic convolutions and full fp32 (no
    TF32) in convolutions and matrix products; elsewhere do nothing.

    Why: the sign step of eq. 9-13 turns any rounding difference in the gradient into a whole step of
    alpha. With PyTorch's defaults cuDNN picks algorithms per run and per batch size and runs fp32
    convolutions in TF32, so the same seed twice, or a batch against its images one at a time, can give
    different purified images; with these switches they give the same ones. Process-wide: these are
    torch's global backend switches.
    """
    if device.type != "cuda":
        return
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
