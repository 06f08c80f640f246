"""The machine a bench runs on and its peak rates, measured in the same run as everything else.

Peak compute is a large dense matrix product (2 m^3 FLOPs per m x m product) in fp32 and bf16 — on
CPU bf16 runs on AVX512-BF16 / AMX where oneDNN has them — and, on CUDA, also tf32. Memory bandwidth
is a large tensor copy (bytes read + written per second).
"""
from __future__ import annotations

import platform
import sys

import numpy as np
import onnxruntime
import torch

from apudae.training.bench.stats import Spread, time_repeated
from apudae.training.provenance import git_commit, machine_description


def describe(device: torch.device, argv: list[str]) -> dict:
    """CPU model, cores, GPU, library versions, git commit and the command line of this run."""
    info = machine_description()
    info.update({
        "torch_threads": torch.get_num_threads(), "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
        "cpu_flags_bf16": _cpu_has("avx512_bf16") or _cpu_has("amx_bf16"),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": str(device), "git_commit": git_commit(), "command": " ".join(["apudae", "bench", *argv]),
        "python_executable": sys.executable, "machine": platform.machine(),
    })
    return info


def _cpu_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and flag in line.split() for line in f)
    except OSError:
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> Spread:
    """FLOP/s of a (size x size) @ (size x size) product in ``dtype`` on ``device``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    def product() -> None:
        torch.mm(a, b)
        _sync(device)

    return time_repeated(product, repeats, warmup=2).inverse(2.0 * size**3)


def copy_bandwidth(device: torch.device, megabytes: int, repeats: int) -> Spread:
    """Bytes/s of copying a ``megabytes`` MB fp32 tensor (counted as read + write)."""
    source = torch.empty(megabytes * 2**20 // 4, device=device).fill_(1.0)
    target = torch.empty_like(source)

    def copy() -> None:
        target.copy_(source)
        _sync(device)

    return time_repeated(copy, repeats, warmup=2).inverse(2.0 * source.numel() * 4)


def peak_rates(device: torch.device, size: int, repeats: int) -> dict[str, dict]:
    """Peak fp32 / bf16 (and on CUDA tf32) matmul FLOP/s and copy bandwidth, as Spread dicts."""
    rates = {"fp32_matmul_flops": matmul_rate(device, torch.float32, size, repeats),
             "bf16_matmul_flops": matmul_rate(device, torch.bfloat16, size, repeats)}
    if device.type == "cuda":
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            rates["tf32_matmul_flops"] = matmul_rate(device, torch.float32, size, repeats)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
    rates["copy_bytes_per_s"] = copy_bandwidth(device, 1024 if device.type == "cuda" else 256, repeats)
    return {name: spread.to_dict() | {"matrix_size": size} for name, spread in rates.items()}
