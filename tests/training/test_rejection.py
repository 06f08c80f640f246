"""Evaluation with rejection: the ROC-AUC, the per-rate counts of a cell summed over batches (the last one
partial) and the harness's clean cells against counts made by hand on the tiny bundle."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY_SHAPE
from apudae.models.bundle import load_bundle
from apudae.models.dae import reconstruction_error
from apudae.training.data import ImageSet
from apudae.training.evaluation.config import EvaluationConfig
from apudae.training.evaluation.harness import run_evaluation
from apudae.training.evaluation.stats import Tally, rejection_counts, roc_auc


def test_roc_auc_of_a_hand_worked_case():
    # pairs (pos, neg): (2, 1) 1, (2, 2) a tie 0.5, (3, 1) 1, (3, 2) 1 -> 3.5 / 4
    assert roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 3.0])) == 0.875
    assert roc_auc(torch.tensor([3.0, 4.0]), torch.tensor([1.0])) == 0.0
    assert math.isnan(roc_auc(torch.tensor([1.0]), torch.tensor([])))


def test_with_rejection_sums_counts_over_batches_the_last_one_partial():
    """A batch of 4 then a partial batch of 1: every figure is a ratio of summed counts, never a mean of the
    two batches' figures (which would give accuracy 0.625 and accepted accuracy 0.75)."""
    tally = Tally()
    batches = [([1, 0, 0, 1], [0, 1, 0, 1]), ([0], [0])]  # (correct, flagged at 0.05) per image
    for correct, flagged in batches:
        correct, flagged = torch.tensor(correct, dtype=torch.bool), torch.tensor(flagged, dtype=torch.bool)
        tally.add(0.1, "F", "bim", "grey-box", int(correct.sum()), len(correct),
                  rejection=rejection_counts(correct, {0.05: flagged}), scores=flagged.double().tolist())
    (cell,) = tally.to_list()
    entry = cell["with_rejection"]["0.05"]
    # defended: images 0, 1, 3 of the first batch (correct or flagged) -> 3 / 5; flagged 2 / 5
    assert (entry["defended"], entry["flagged"], entry["accepted"], entry["accepted_correct"]) == (3, 2, 3, 1)
    assert entry["accuracy"] == 0.6 and entry["detection_rate"] == 0.4 and entry["accepted_accuracy"] == 1 / 3
    assert cell["accuracy"] == 0.4  # without rejection: images 0 and 3 of 5
    assert "roc_auc" not in cell  # no clean cell to compare with


def test_clean_cells_match_counts_made_by_hand(tiny_models_dir):
    """7 images (4 seeded random ones and 3 blank ones, which the tiny detector flags), batches of 4 and 3."""
    bundle = load_bundle(tiny_models_dir / "tiny")
    images = torch.cat([torch.rand(4, *TINY_SHAPE, generator=torch.Generator().manual_seed(3)),
                        torch.zeros(3, *TINY_SHAPE)])
    pixels = (images * 255).round().to(torch.uint8)
    with torch.no_grad():
        x = pixels.float() / 255
        labels = bundle.classifier(x).argmax(1)
        labels[1] = (labels[1] + 1) % 10  # the bare classifier is wrong on image 1 only
        errors = reconstruction_error(bundle.dae, x)
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("fgsm",), samples=None, batch_size=4,
                              epsilons=(0.1,), purify={"n": 1})
    summary = run_evaluation(config, data=ImageSet(pixels, labels, bundle.classes))
    assert summary["detector"]["thresholds"] == bundle.calibration.detector.to_dict()["thresholds"]
    clean = next(c for c in summary["cells"] if c["defence"] == "none" and c["attack"] == "clean")
    for rate in bundle.calibration.detector.rates:
        flagged = bundle.calibration.detector.flags(errors, rate)
        assert flagged[4:].all() and not flagged[:4].any()
        entry = clean["with_rejection"][f"{rate:g}"]
        assert (entry["flagged"], entry["accepted"], entry["accepted_correct"], entry["defended"]) == (3, 4, 3, 6)
        assert entry["detection_rate"] == pytest.approx(3 / 7)
    fgsm = next(c for c in summary["cells"] if c["defence"] == "none" and c["attack"] == "fgsm")
    assert 0 <= fgsm["roc_auc"] <= 1 and fgsm["with_rejection"]["0.01"]["defended"] >= fgsm["correct"]
