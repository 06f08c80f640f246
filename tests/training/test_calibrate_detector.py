"""`apudae calibrate-detector` adds the thresholds to a bundle calibrated without them, in place, from its
training holdout, and refuses when that holdout does not give the recorded mu and sigma."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from conftest import TINY_SHAPE, make_tiny_nets
from apudae.models.bundle import load_bundle, write_bundle
from apudae.models.calibration import Calibration
from apudae.models.dae import reconstruction_error
from apudae.training import calibrate_detector
from apudae.training.data import ImageSet, train_holdout_split

HOLDOUT = 40


def _train_split(seed: int) -> ImageSet:
    images = (torch.rand(50, *TINY_SHAPE, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)
    return ImageSet(images, torch.zeros(50, dtype=torch.int64), [f"class {i}" for i in range(10)])


def test_thresholds_are_added_in_place_and_a_differing_holdout_is_refused(tmp_path, monkeypatch, capsys):
    dae, classifier = make_tiny_nets()
    train = _train_split(0)
    _, holdout = train_holdout_split(len(train), HOLDOUT)
    with torch.no_grad():
        calibration = Calibration.from_errors(reconstruction_error(dae, train.subset(holdout).floats()))
    old = Calibration(calibration.mu, calibration.sigma, calibration.n, calibration.edges, calibration.counts)
    provenance = {"data": "random", "dataset": "tiny", "image_size": list(TINY_SHAPE[1:]), "recipe": {"holdout": HOLDOUT},
                  "splits": {"train": 10, "holdout_calibration": HOLDOUT, "test": 0}, "epochs": {},
                  "wall_seconds": {}, "seed": 0, "git_commit": "test", "machine": {"cpu": "x", "cores": 1, "torch": "x"}}
    meta = write_bundle(tmp_path / "old", "old", dae, classifier, old, [f"class {i}" for i in range(10)],
                        {"variant": "F", "n": 1}, provenance, {"clean_test_accuracy": 0.1})
    assert "detector" not in meta["calibration"]
    args = argparse.Namespace(bundle=str(tmp_path / "old"), data_dir=None, threads=None)

    monkeypatch.setattr(calibrate_detector, "load_dataset", lambda *a, **k: _train_split(1))  # other images
    assert calibrate_detector.run(args) == 2
    assert "differ from the bundle's calibration" in capsys.readouterr().err
    assert load_bundle(tmp_path / "old").calibration.detector is None

    monkeypatch.setattr(calibrate_detector, "load_dataset", lambda *a, **k: train)
    assert calibrate_detector.run(args) == 0
    updated = json.loads((tmp_path / "old" / "bundle.json").read_text())
    assert updated["files"] == meta["files"] and updated["calibration"]["mu"] == meta["calibration"]["mu"]
    assert load_bundle(tmp_path / "old").calibration.detector.thresholds == pytest.approx(calibration.detector.thresholds)
