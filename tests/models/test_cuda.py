"""make_cuda_reproducible: the switches it sets on a CUDA device, and that it leaves every other device alone.
No GPU is needed: it only sets torch's backend flags (their effect was measured on an H200, see its docstring)."""
from __future__ import annotations

import pytest
import torch

from models.cuda import make_cuda_reproducible

SWITCHES = ((torch.backends.cudnn, "deterministic"), (torch.backends.cudnn, "benchmark"),
            (torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32"))


@pytest.fixture
def restore_switches():
    saved = [getattr(owner, name) for owner, name in SWITCHES]
    yield
    for (owner, name), value in zip(SWITCHES, saved):
        setattr(owner, name, value)


def _switches() -> tuple[bool, ...]:
    return tuple(getattr(owner, name) for owner, name in SWITCHES)


def test_cuda_gets_deterministic_full_fp32(restore_switches):
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = True, True
    make_cuda_reproducible(torch.device("cuda:0"))
    assert _switches() == (True, False, False, False)


def test_other_devices_are_left_alone(restore_switches):
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = True, True
    before = _switches()
    make_cuda_reproducible(torch.device("cpu"))
    assert _switches() == before
