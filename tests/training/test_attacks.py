"""Attacks: every one stays in its eps-ball and [0, 1]; PGD breaks an undefended model; the adaptive attack
with an unbounded budget breaks the defended pipeline (sanity checks of an honest evaluation)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from apudae.models.calibration import Calibration
from apudae.models.dae import DAEConfig, DenoisingAutoEncoder, reconstruction_error
from apudae.models.purification import PurifySettings, purify, purify_unrolled
from apudae.training.attacks import ADAPTIVE, ATTACKS, GREY_BOX, PGD, PGDEOT, AttackTarget, build_attacks
from apudae.training.attacks.eot import DefendedClassifier


class Linear(nn.Module):
    """A tiny fixed linear classifier on 1x8x8 images: fast, and confidently right on its own data."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def setup():
    classifier = Linear().eval()
    dae = DenoisingAutoEncoder(DAEConfig(in_channels=1, depth=1, width=4)).eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = classifier(x).argmax(1)
        calibration = Calibration.from_errors(reconstruction_error(dae, x))
    settings = PurifySettings(variant="F", n=3, alpha=0.02, gamma=0.05)
    return classifier, dae, calibration, settings, x, y


def target_of(setup, seed: int = 0) -> AttackTarget:
    classifier, dae, calibration, settings, _, _ = setup
    return AttackTarget(classifier, dae, calibration, settings, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_stays_in_its_ball_and_in_range(setup, name):
    _, _, _, _, x, y = setup
    epsilon = 0.05
    for attack in build_attacks(name, epsilon, steps=2, eot=2, reason="test"):
        if hasattr(attack, "search_steps"):
            attack.steps, attack.search_steps = 5, 2
        adv = attack.generate(target_of(setup), x, y)
        assert adv.shape == x.shape and not adv.requires_grad
        assert (adv - x).abs().max() <= epsilon + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
        assert attack.threat_model in (GREY_BOX, ADAPTIVE)


@pytest.mark.parametrize("name", ["pgd", "bpda-eot", "pgd-eot", "apgd-eot"])
def test_attack_is_seeded(setup, name):
    """The same attack seed repeats the attack, the EOT draws of the defence's noise included."""
    _, _, _, _, x, y = setup
    attack = build_attacks(name, 0.05, steps=2, eot=2, reason="test")[0]
    a = attack.generate(target_of(setup, 3), x, y)
    torch.manual_seed(1)  # the global generator plays no part
    b = attack.generate(target_of(setup, 3), x, y)
    c = attack.generate(target_of(setup, 4), x, y)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_eot_averages_different_draws_of_the_defence(setup):
    _, _, _, _, x, _ = setup
    with torch.no_grad():
        one = DefendedClassifier(target_of(setup, 3), eot=1)(x)
        two = DefendedClassifier(target_of(setup, 3), eot=2)(x)  # its first draw is ``one``'s
    assert not torch.allclose(one, two)


def test_eot_batch_equals_one_draw_after_another(setup):
    """The batched EOT average equals the mean of eot separate purifications, each with the seed the
    attack's generator gives it in turn."""
    classifier, dae, calibration, settings, x, _ = setup
    generator = torch.Generator().manual_seed(3)
    seeds = [int(torch.randint(0, 2**62, (1,), generator=generator)) for _ in range(3)]
    with torch.no_grad():
        batched = DefendedClassifier(target_of(setup, 3), eot=3)(x)
        one_by_one = torch.stack([
            torch.log_softmax(classifier(purify_unrolled(dae, x, calibration, replace(settings, seed=s))), dim=1)
            for s in seeds]).mean(0)
    torch.testing.assert_close(batched, one_by_one)


def test_pgd_breaks_an_undefended_model(setup):
    classifier, _, _, _, x, y = setup
    adv = PGD(0.3).generate(target_of(setup), x, y)
    with torch.no_grad():
        assert (classifier(adv).argmax(1) == y).float().mean() == 0


def test_unbounded_adaptive_attack_breaks_the_defended_pipeline(setup):
    classifier, dae, calibration, settings, x, y = setup
    adv = PGDEOT(1.0, steps=20, eot=2, alpha=0.1).generate(target_of(setup), x, y)
    purified = purify(dae, adv, calibration, settings).images
    with torch.no_grad():
        assert (classifier(purified).argmax(1) == y).float().mean() == 0


def test_counter_b_sweeps_beta_and_unknown_names_fail():
    assert len(build_attacks("counter-b", 0.1)) > 1
    assert len({a.name for a in build_attacks("counter-b", 0.1)}) == len(build_attacks("counter-b", 0.1))
    with pytest.raises(ValueError, match="unknown attack"):
        build_attacks("deepfool", 0.1)


def test_bim_step_count_follows_eq_3():
    attack = build_attacks("bim", 0.1)[0]
    assert attack.alpha == pytest.approx(0.01) and attack.steps == int(2 * 0.1 / 0.01 + 2)


@pytest.mark.parametrize("name, steps, eot", [("pgd-eot", 200, 20), ("bpda-eot", 200, 20), ("apgd-eot", 100, 20),
                                              ("apgd-ce", 100, 1)])
def test_adaptive_attacks_default_to_the_field_standard(name, steps, eot):
    """Without --adaptive-steps/--adaptive-eot every adaptive attack runs the full setting;
    the non-adaptive APGD-CE attacks the classifier alone, which has no randomness to average."""
    attack = build_attacks(name, 8 / 255)[0]
    assert (attack.steps, attack.eot) == (steps, eot)
