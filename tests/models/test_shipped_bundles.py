"""Smoke test per shipped bundle: hashes check out and the classifier clears its floor on real test images."""
from pathlib import Path

import pytest

from models.bundle import load_bundle
from training.accuracy import FLOORS
from training.data import load_dataset
from training.loops import accuracy

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_shipped_bundle_loads_and_clears_its_floor(name, data_dir):
    bundle = load_bundle(MODELS / name)
    test = load_dataset(bundle.meta["provenance"]["dataset"], "test", data_dir)
    first = test.subset(slice(0, 500))
    assert accuracy(bundle.classifier, first) >= FLOORS[name]
