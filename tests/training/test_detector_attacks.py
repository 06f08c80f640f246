"""The detector-aware adaptive attacks lower the detection score of a tiny pipeline against the same attacks
without the detection term, and DiffHammer's resubmission count: a randomised defence must answer right on
every one of N submissions of an adversary, unless the detector flags it."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from conftest import TINY_SHAPE
from apudae.models.bundle import load_bundle
from apudae.models.calibration import Calibration
from apudae.models.dae import DAEConfig, DenoisingAutoEncoder, reconstruction_error
from apudae.models.purification import PurificationResult, PurifySettings
from apudae.training.attacks import DETECTOR_WEIGHTS, AttackTarget, build_attacks
from apudae.training.attacks.detector_aware import detection_penalty
from apudae.training.data import ImageSet
from apudae.training.evaluation.config import EvaluationConfig
from apudae.training.evaluation.harness import Defence, run_evaluation


@pytest.fixture(scope="module")
def pipeline():
    """A fixed linear classifier on 1x8x8 images, a tiny DAE calibrated (detector included) on the images."""
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    dae = DenoisingAutoEncoder(DAEConfig(in_channels=1, depth=1, width=4)).eval()
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = classifier(x).argmax(1)
        calibration = Calibration.from_errors(reconstruction_error(dae, x))
    return classifier, dae, calibration, PurifySettings(variant="F", n=2, alpha=0.02, gamma=0.05), x, y


@pytest.mark.parametrize("aware, plain", [("pgd-eot-detector", "pgd-eot"), ("bpda-eot-detector", "bpda-eot"),
                                          ("counter-b-detector", "bim")])
def test_the_detector_aware_attack_lowers_the_detection_score(pipeline, aware, plain):
    classifier, dae, calibration, settings, x, y = pipeline
    target = lambda: AttackTarget(classifier, dae, calibration, settings, torch.Generator().manual_seed(0))  # noqa: E731
    epsilon = 0.3
    baseline = build_attacks(plain, epsilon, steps=10, eot=2, reason="a test")[0].generate(target(), x, y)
    attacks = build_attacks(aware, epsilon, steps=10, eot=2, reason="a test")
    assert [a.weight for a in attacks] == list(DETECTOR_WEIGHTS) and len({a.name for a in attacks}) == len(attacks)
    strongest = attacks[-1].generate(target(), x, y)
    assert (strongest - x).abs().max() <= epsilon + 1e-6 and 0 <= strongest.min() and strongest.max() <= 1
    with torch.no_grad():
        before, after = (detection_penalty(target(), adv, None, 0.1).mean() for adv in (baseline, strongest))
        flagged = [calibration.detector.flags(reconstruction_error(dae, adv), 0.05).sum() for adv in (baseline, strongest)]
    assert before > 0 and after < before / 2 and flagged[1] < flagged[0]


def test_the_detector_aware_attack_needs_thresholds(pipeline):
    classifier, dae, calibration, settings, x, y = pipeline
    old = Calibration(calibration.mu, calibration.sigma, calibration.n, calibration.edges, calibration.counts)
    attack = build_attacks("counter-b-detector", 0.1)[0]
    with pytest.raises(ValueError, match="calibrate-detector"):
        attack.generate(AttackTarget(classifier, dae, old, settings), x, y)


def test_resubmissions_count_an_image_only_if_every_answer_is_right_or_it_is_flagged(tiny_models_dir, monkeypatch):
    """7 images, the last 2 blank (the tiny detector flags them), all labelled 0. The scripted defences answer
    0 except that image j is answered 1 at purifier seed 0 + j for j in (2, 4, 6): the first submission
    (seed 0) is right on all 7; over 10 submissions images 2, 4, 6 are wrong, of which 6 is flagged."""
    bundle = load_bundle(tiny_models_dir / "tiny")
    pixels = torch.cat([(torch.rand(5, *TINY_SHAPE, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8),
                        torch.zeros(2, *TINY_SHAPE, dtype=torch.uint8)])
    data = ImageSet(pixels, torch.zeros(7, dtype=torch.int64), bundle.classes)

    def scripted_predict(self, bundle, x):
        preds = torch.zeros(len(x), dtype=torch.int64)
        seed = None if self.settings is None else self.settings.seed
        if seed in (2, 4, 6):
            preds[seed] = 1
        zeros = torch.zeros(len(x))
        return preds, None if seed is None else PurificationResult(x, zeros, zeros, zeros.long())

    monkeypatch.setattr(Defence, "predict", scripted_predict)
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("counter-a",), samples=None, batch_size=7,
                              epsilons=(0.1,), purify={"n": 1}, seed=0)
    cells = {(c["defence"], c["attack"]): c for c in run_evaluation(config, data=data)["cells"]}
    assert cells[("F", "counter-a")]["correct"] == 7
    resubmitted = cells[("F", "counter-a x10 resubmissions")]
    assert (resubmitted["correct"], resubmitted["total"]) == (4, 7)
    assert resubmitted["with_rejection"]["0.01"]["defended"] == 5 and resubmitted["with_rejection"]["0.01"]["flagged"] == 2
    assert ("direct", "counter-a x10 resubmissions") not in cells  # the direct DAE is not randomised
    once = run_evaluation(replace(config, resubmissions=1), data=data)["cells"]
    assert not any("resubmissions" in c["attack"] for c in once)
