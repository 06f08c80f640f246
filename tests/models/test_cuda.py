"""CUDA: make_cuda_reproducible's switches (no GPU needed: it only sets torch's backend flags), and on a GPU
host the shipped bundles purified and attacked on CUDA (skipped without one)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from conftest import load_shipped
from apudae.models.bundle import Bundle
from apudae.models.cuda import make_cuda_reproducible
from apudae.models.purification import PurifySettings, purify
from apudae.training.attacks.eot import PGDEOT
from apudae.training.attacks.base import AttackTarget

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


# --- On a GPU: the shipped bundles on CUDA (skipped without one; training/evaluation/gpu_suite.sh runs them) ---

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: run on a GPU host (training/evaluation/gpu_suite.sh)")
SHIPPED = ("mnist", "cifar10")
IMAGES = 64  # real test images per bundle


@pytest.fixture
def cuda(restore_switches) -> torch.device:
    """The CUDA device, set up as the service and the evaluation set it (make_cuda_reproducible)."""
    device = torch.device("cuda")
    make_cuda_reproducible(device)
    return device


def _shipped(name: str, data_dir: Path) -> tuple[Bundle, torch.Tensor]:
    """The shipped bundle (on the CPU) and its first IMAGES test images, (IMAGES, C, H, W) in [0, 1]."""
    bundle, test = load_shipped(name, data_dir)
    return bundle, test.subset(slice(0, IMAGES)).floats()


def _settings(bundle: Bundle, **overrides) -> PurifySettings:
    return PurifySettings.from_defaults(bundle.purification_defaults, seed=0, **overrides)


@needs_cuda
@pytest.mark.parametrize("name", SHIPPED)
def test_cuda_purification_repeats_and_is_batch_independent(name, data_dir, cuda):
    """Issue 3, item 2 on a GPU: the same seed gives the same images, a batch gives each image's result
    alone, and the weights get no gradients."""
    bundle, images = _shipped(name, data_dir)
    dae, settings, x = bundle.dae.to(cuda), _settings(bundle), images.to(cuda)
    first = purify(dae, x, bundle.calibration, settings)
    assert first.images.device.type == "cuda" and first.steps.sum() > 0
    assert torch.equal(purify(dae, x, bundle.calibration, settings).images, first.images)
    for i in range(8):
        alone = purify(dae, x[i:i + 1], bundle.calibration, settings)
        assert torch.equal(alone.images[0], first.images[i]) and alone.steps.item() == first.steps[i].item()
    assert all(p.grad is None for p in dae.parameters())


@needs_cuda
@pytest.mark.parametrize("name", SHIPPED)
def test_cuda_matches_cpu_without_noise(name, data_dir, cuda):
    """F without its noise (gamma = 0) on CUDA against the CPU: the same errors to float precision and the
    same predictions (at most one of IMAGES apart). Pixels are not compared: a sign step flips where the two
    devices' gradients round differently (0.11% of CIFAR-10's pixels on an H200, 2026-11-28)."""
    bundle, images = _shipped(name, data_dir)
    settings = _settings(bundle, gamma=0.0)
    on_cpu = purify(bundle.dae, images, bundle.calibration, settings)
    on_cuda = purify(copy.deepcopy(bundle.dae).to(cuda), images.to(cuda), bundle.calibration, settings)
    torch.testing.assert_close(on_cuda.error_before.cpu(), on_cpu.error_before, rtol=1e-5, atol=0)
    with torch.no_grad():
        predicted_cpu = bundle.classifier(on_cpu.images).argmax(1)
        predicted_cuda = bundle.classifier(on_cuda.images.cpu()).argmax(1)
    assert (predicted_cpu != predicted_cuda).sum().item() <= 1


@needs_cuda
def test_cuda_adaptive_attack_stays_in_its_ball(data_dir, cuda):
    """PGD-EOT through the unrolled loop on CUDA (2 steps x EOT 2): adversaries on the GPU, within epsilon
    and [0, 1], repeatable from the attack's seed."""
    bundle, images = _shipped("mnist", data_dir)
    x, y = images[:8].to(cuda), torch.arange(8, device=cuda) % 10
    classifier, dae = bundle.classifier.to(cuda), bundle.dae.to(cuda)

    def attack() -> torch.Tensor:
        target = AttackTarget(classifier, dae, bundle.calibration, _settings(bundle), torch.Generator().manual_seed(0))
        return PGDEOT(epsilon=0.1, steps=2, eot=2, reason="test").generate(target, x, y)

    adv = attack()
    assert adv.device.type == "cuda"
    assert (adv - x).abs().max().item() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(attack(), adv)
