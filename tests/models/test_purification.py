"""The purifier: each variant's step against a hand-computed one, early exit, seeds, batch independence."""
from __future__ import annotations

import pytest
import torch

from apudae.models.calibration import Calibration
from apudae.models.dae import DAEConfig, DenoisingAutoEncoder, reconstruction_error
from apudae.models.purification import VARIANTS, NoiseSource, PurifySettings, purify, purify_unrolled


@pytest.fixture(scope="module")
def dae() -> DenoisingAutoEncoder:
    torch.manual_seed(0)
    return DenoisingAutoEncoder(DAEConfig(in_channels=1, depth=2, width=8)).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def calibration_at(mu: float, sigma: float = 0.01) -> Calibration:
    return Calibration(mu=mu, sigma=sigma, n=2, edges=(1.0,), counts=(2, 0))


def dist_and_grad(dae, x):
    """eq. 7 per image and its gradient w.r.t. x, computed directly."""
    x = x.clone().requires_grad_(True)
    dist = ((x - dae(x)) ** 2).mean(dim=(1, 2, 3))
    (grad,) = torch.autograd.grad(dist.sum(), x)
    return dist.detach(), grad


def test_variant_a_one_step_matches_hand_computation(dae, images):
    cal = calibration_at(0.0)
    _, grad = dist_and_grad(dae, images)
    expected = (images - 0.01 * grad.sign()).clamp(0, 1)
    result = purify(dae, images, cal, PurifySettings(variant="A", n=1, alpha=0.01))
    torch.testing.assert_close(result.images, expected)
    assert result.steps.tolist() == [1] * 5


def test_variant_b_two_momentum_steps(dae, images):
    beta, alpha = 0.8, 0.02
    _, g1 = dist_and_grad(dae, images)
    w1 = (1 - beta) * g1
    x1 = (images - alpha * w1 / w1.abs().amax(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    _, g2 = dist_and_grad(dae, x1)
    w2 = beta * w1 + (1 - beta) * g2
    x2 = (x1 - alpha * w2 / w2.abs().amax(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    result = purify(dae, images, calibration_at(0.0), PurifySettings(variant="B", n=2, alpha=alpha, beta=beta,
                                                                    step="linf"))
    torch.testing.assert_close(result.images, x2)


def test_variant_c_scales_step_by_error(dae, images):
    dist, grad = dist_and_grad(dae, images)
    cal = calibration_at(dist.mean().item(), sigma=dist.std().item())
    alpha_i = 0.05 * (1 - torch.exp(-(((dist - cal.mu) / cal.sigma) ** 2)))
    expected = (images - alpha_i.view(-1, 1, 1, 1) * grad.sign()).clamp(0, 1)
    result = purify(dae, images, cal, PurifySettings(variant="C", n=1, alpha=0.05))
    torch.testing.assert_close(result.images, expected)


@pytest.mark.parametrize("variant", ["D", "E"])
def test_target_variants_step_towards_mu(dae, images, variant):
    dist, grad = dist_and_grad(dae, images)
    mu = dist.median().item()  # some images above, some below mu
    sign = torch.sign(dist - mu).view(-1, 1, 1, 1)  # d|dist - mu| / d dist
    if variant == "E":
        sign = sign.clamp_min(0)  # d max(dist - mu, 0) / d dist
    expected = (images - 0.01 * (sign * grad).sign()).clamp(0, 1)
    result = purify(dae, images, calibration_at(mu), PurifySettings(variant=variant, n=1, alpha=0.01))
    torch.testing.assert_close(result.images, expected)
    if variant == "E":
        assert result.steps.tolist() == (dist > mu).long().tolist()


def test_e_leaves_images_under_mu_unchanged(dae, images):
    result = purify(dae, images, calibration_at(10.0), PurifySettings(variant="E", n=15))
    assert torch.equal(result.images, images)
    assert result.steps.tolist() == [0] * 5
    torch.testing.assert_close(result.error_after, result.error_before)
    torch.testing.assert_close(result.error_before, reconstruction_error(dae, images).detach())


def test_e_without_carry_stops_an_image_once_under_mu(dae, images):
    dist, _ = dist_and_grad(dae, images)
    cal = calibration_at(dist.min().item() * 0.999)  # every image starts above mu, barely
    result = purify(dae, images, cal, PurifySettings(variant="E", n=50, alpha=0.01, carry=False))
    assert (result.steps < 50).all() and (result.steps >= 1).all()
    assert (result.error_after <= cal.mu).all()


def test_e_with_carry_keeps_stepping_along_the_momentum_under_mu(dae, images):
    """eq. 9-13 as written: under mu the gradient is 0 but w_i = beta * w_{i-1} still moves the image."""
    dist, _ = dist_and_grad(dae, images)
    cal = calibration_at(dist.min().item() * 0.999)
    stopped = purify(dae, images, cal, PurifySettings(variant="E", n=50, alpha=0.01, carry=False))
    carried = purify(dae, images, cal, PurifySettings(variant="E", n=50, alpha=0.01, carry=True))
    assert carried.steps.tolist() == [50] * 5
    moved = (carried.images - images).abs().amax(dim=(1, 2, 3))
    assert (moved > (stopped.images - images).abs().amax(dim=(1, 2, 3))).all()


def test_f_with_zero_gamma_equals_e(dae, images):
    cal = calibration_at(0.0)
    e = purify(dae, images, cal, PurifySettings(variant="E", n=4))
    f = purify(dae, images, cal, PurifySettings(variant="F", n=4, gamma=0.0, seed=3))
    torch.testing.assert_close(f.images, e.images)
    assert torch.equal(f.steps, e.steps)


@pytest.mark.parametrize("variant", VARIANTS)
def test_seeded_batch_equals_one_at_a_time_and_is_repeatable(dae, images, variant):
    cal = calibration_at(reconstruction_error(dae, images).median().item())
    settings = PurifySettings(variant=variant, n=4, gamma=0.1, seed=7)
    batch = purify(dae, images, cal, settings)
    again = purify(dae, images, cal, settings)
    single = [purify(dae, images[i:i + 1], cal, settings) for i in range(len(images))]
    assert torch.equal(batch.images, again.images)
    torch.testing.assert_close(batch.images, torch.cat([s.images for s in single]), atol=1e-5, rtol=0)
    assert torch.equal(batch.steps, torch.cat([s.steps for s in single]))
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert batch.images.dtype == torch.float32 and batch.steps.dtype == torch.int64


@pytest.mark.parametrize("variant", ["F", "G"])
def test_batched_draws_equal_one_purification_per_seed(dae, images, variant):
    """NoiseSource.for_draws (the EOT batch of the adaptive attacks): copy k of the repeated batch gets
    exactly the noise and the result of a purification with seed k alone."""
    cal = calibration_at(reconstruction_error(dae, images).median().item())
    settings = PurifySettings(variant=variant, n=4, gamma=0.1)
    seeds = (11, 12, 13)
    batched = purify(dae, images.repeat(len(seeds), 1, 1, 1), cal, settings, NoiseSource.for_draws(images, seeds))
    separate = [purify(dae, images, cal, PurifySettings(variant=variant, n=4, gamma=0.1, seed=s)) for s in seeds]
    torch.testing.assert_close(batched.images, torch.cat([r.images for r in separate]), atol=1e-5, rtol=0)
    assert torch.equal(batched.steps, torch.cat([r.steps for r in separate]))
    unrolled = purify_unrolled(dae, images.repeat(len(seeds), 1, 1, 1), cal, settings,
                               NoiseSource.for_draws(images, seeds))
    torch.testing.assert_close(unrolled.detach(), batched.images, atol=1e-5, rtol=0)


def test_different_seeds_give_different_noise(dae, images):
    cal = calibration_at(0.0)
    a = purify(dae, images, cal, PurifySettings(variant="F", n=3, gamma=0.2, seed=1))
    b = purify(dae, images, cal, PurifySettings(variant="F", n=3, gamma=0.2, seed=2))
    assert not torch.equal(a.images, b.images)


def test_no_weight_gradients_and_works_under_inference_mode(dae, images):
    trainable = DenoisingAutoEncoder(DAEConfig(in_channels=1, depth=2, width=8)).eval()
    with torch.inference_mode():
        result = purify(trainable, images, calibration_at(0.0), PurifySettings(variant="B", n=2))
    assert all(p.grad is None for p in trainable.parameters())
    assert result.images.shape == images.shape


def test_direct_returns_the_reconstruction(dae, images):
    result = purify(dae, images, calibration_at(0.0), PurifySettings(variant="direct"))
    torch.testing.assert_close(result.images, dae(images).detach())
    torch.testing.assert_close(result.error_after, reconstruction_error(dae, result.images).detach())


@pytest.mark.parametrize("variant", ["direct", "A", "F", "G"])
def test_unrolled_matches_purify_and_passes_gradients(dae, images, variant):
    cal = calibration_at(0.0)
    settings = PurifySettings(variant=variant, n=3, seed=5, step="linf")
    x = images.clone().requires_grad_(True)
    out = purify_unrolled(dae, x, cal, settings)
    torch.testing.assert_close(out.detach(), purify(dae, images, cal, settings).images)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0


def test_settings_from_defaults_and_validation():
    s = PurifySettings.from_defaults({"variant": "F", "n": 15, "alpha": 0.01, "beta": 0.9, "gamma": 0.05},
                                     n=3, gamma=None)
    assert (s.n, s.gamma) == (3, 0.05)
    with pytest.raises(ValueError, match="variant"):
        PurifySettings(variant="Z")
    with pytest.raises(ValueError, match="unknown purification settings"):
        PurifySettings.from_defaults({"bogus": 1})
