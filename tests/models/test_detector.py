"""The detector: threshold arithmetic on hand-worked cases, its bundle.json record (versioned, validated),
old bundles without it, and the shipped bundles' thresholds."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_SHAPE
from apudae.models.bundle import load_bundle
from apudae.models.calibration import Calibration
from apudae.models.dae import reconstruction_error
from apudae.models.detector import FPRS, Detector, DetectorError, threshold_at


def test_thresholds_of_a_hand_worked_case():
    scores = torch.arange(100, 0, -1).double()  # 100 clean scores 1..100, in any order
    # floor(fpr * 100) scores may lie above t: 0, 1 and 5 of them
    assert [threshold_at(scores, fpr) for fpr in FPRS] == [100.0, 99.0, 95.0]
    detector = Detector.from_scores(scores)
    assert detector.holdout_flagged == {0.001: 0.0, 0.01: 0.01, 0.05: 0.05}
    assert detector.flags(torch.tensor([95.0, 95.5, 101.0]), 0.05).tolist() == [False, True, True]


def test_ties_at_the_threshold_stay_unflagged():
    # 4 scores, fpr 0.5: 2 may lie above t = the 2nd smallest (2); the tied 2s stay under, none is flagged
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0])
    assert threshold_at(scores, 0.5) == 2.0
    assert Detector.from_scores(scores, (0.01, 0.5)).holdout_flagged[0.5] == 0.0


def test_record_round_trips_and_bad_records_say_what_is_wrong():
    detector = Detector.from_scores(torch.linspace(0, 1, 1000))
    record = json.loads(json.dumps(detector.to_dict()))
    assert record["format_version"] == 1 and list(record["thresholds"]) == ["0.001", "0.01", "0.05"]
    assert Detector.from_dict(record) == detector
    for change, message in [({"format_version": 2}, "format_version"), ({"statistic": "steps"}, "statistic"),
                            ({"thresholds": {"0.05": 0.1}, "holdout_flagged": {"0.05": 0.0}}, "default"),
                            ({"thresholds": {"0.01": -1.0}, "holdout_flagged": {"0.01": 0.0}}, ">= 0"),
                            ({"n": "many"}, "malformed")]:
        with pytest.raises(DetectorError, match=message):
            Detector.from_dict({**record, **change})
    with pytest.raises(DetectorError, match="0.001, 0.01, 0.05"):
        detector.threshold(0.02)


def test_calibration_carries_the_detector_and_reads_records_without_one():
    errors = torch.linspace(0.001, 0.002, 200)
    calibration = Calibration.from_errors(errors)
    assert calibration.detector == Detector.from_scores(errors)
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    old = calibration.to_dict()
    del old["detector"]
    assert Calibration.from_dict(old).detector is None


def test_a_bundle_calibrated_before_the_detector_still_loads(tiny_models_dir, tmp_path):
    path = shutil.copytree(tiny_models_dir / "tiny", tmp_path / "old")
    meta = json.loads((path / "bundle.json").read_text())
    del meta["calibration"]["detector"]
    (path / "bundle.json").write_text(json.dumps(meta))
    bundle = load_bundle(path)
    assert bundle.calibration.detector is None and bundle.calibration.mu == meta["calibration"]["mu"]


def test_out_of_distribution_image_is_flagged_on_the_tiny_bundle(tiny_models_dir):
    """The tiny bundle is calibrated on 64 seeded uniform random images: a blank one lies far outside them,
    and no threshold flags the calibration images' median."""
    bundle = load_bundle(tiny_models_dir / "tiny")
    clean = torch.rand(64, *TINY_SHAPE, generator=torch.Generator().manual_seed(0))  # conftest's calibration images
    with torch.no_grad():
        blank = reconstruction_error(bundle.dae, torch.zeros(1, *TINY_SHAPE))
        median = reconstruction_error(bundle.dae, clean).median().view(1)
    for rate in FPRS:
        assert bundle.calibration.detector.flags(torch.cat([blank, median]), rate).tolist() == [True, False]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "imagenet"])
def test_shipped_bundles_ship_thresholds(name):
    meta = json.loads((Path(REPO) / "models" / name / "bundle.json").read_text())
    detector = Calibration.from_dict(meta["calibration"]).detector
    assert detector is not None and detector.rates == FPRS and detector.n == meta["calibration"]["n"]
    thresholds = [detector.threshold(rate) for rate in FPRS]
    assert thresholds == sorted(thresholds, reverse=True) and thresholds[-1] > meta["calibration"]["mu"]
    assert all(detector.holdout_flagged[rate] <= rate for rate in FPRS)
