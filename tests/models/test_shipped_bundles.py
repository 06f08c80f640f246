"""Smoke test per shipped bundle: hashes check out and the classifier clears its floor on real test images."""
import pytest

from conftest import load_shipped
from apudae.training.accuracy import FLOORS
from apudae.training.loops import accuracy


SMOKE_IMAGES = {"imagenet": 100}  # first test-split images checked (default 500)


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_shipped_bundle_loads_and_clears_its_floor(name, data_dir):
    bundle, test = load_shipped(name, data_dir)
    first = test.subset(slice(0, SMOKE_IMAGES.get(name, 500)))
    assert accuracy(bundle.classifier, first, batch_size=50) >= FLOORS[name]
