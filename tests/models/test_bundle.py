"""Bundle round-trip, hash checks, ONNX parity and calibration arithmetic."""
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import TINY_SHAPE, make_tiny_nets
from apudae.models.bundle import BundleError, load_bundle
from apudae.models.calibration import ERROR_BUCKETS, Calibration


def test_round_trip_gives_the_same_networks_in_eval_mode(tiny_models_dir):
    bundle = load_bundle(tiny_models_dir / "tiny")
    dae, classifier = make_tiny_nets()
    x = torch.rand(3, *TINY_SHAPE)
    assert torch.equal(bundle.dae(x), dae(x))
    assert torch.equal(bundle.classifier(x), classifier(x))
    assert not bundle.dae.training and not bundle.classifier.training
    assert not any(p.requires_grad for p in bundle.dae.parameters())
    assert bundle.input_shape == TINY_SHAPE and len(bundle.classes) == 10
    meta = bundle.meta
    for key in ("input_shape", "classes", "calibration", "dae", "classifier", "purification", "provenance",
                "metrics", "files"):
        assert key in meta
    assert meta["purification"]["variant"] == "F"
    assert (tiny_models_dir / "tiny" / "README.md").read_text().startswith("# Model card")


def test_onnx_classifier_matches_pytorch(tiny_models_dir):
    bundle = load_bundle(tiny_models_dir / "tiny")
    session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    x = torch.rand(5, *TINY_SHAPE)
    onnx_logits = session.run(None, {"image": x.numpy()})[0]
    assert np.abs(onnx_logits - bundle.classifier(x).numpy()).max() <= 1e-4


@pytest.mark.parametrize("file", ["dae.safetensors", "classifier.onnx"])
def test_tampered_or_missing_weights_are_refused(tiny_models_dir, tmp_path, file):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_models_dir / "tiny", copy)
    with open(copy / file, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(BundleError, match=f"{file} has SHA-256"):
        load_bundle(copy)
    (copy / file).unlink()
    with pytest.raises(BundleError, match=f"{file} is missing"):
        load_bundle(copy)


def test_bundle_json_cannot_point_outside_the_bundle(tiny_models_dir, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_models_dir / "tiny", copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta["files"]["../escape.safetensors"] = "0" * 64
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(copy)


def test_not_a_bundle_gets_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match="no bundle.json"):
        load_bundle(tmp_path)


def test_calibration_on_a_hand_checked_case():
    cal = Calibration.from_errors(torch.tensor([1e-3, 2e-3, 3e-3, 6e-3], dtype=torch.float64))
    assert cal.mu == pytest.approx(3e-3)
    assert cal.sigma == pytest.approx(np.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 4) * 1e-3)
    assert sum(cal.counts) == 4 and cal.edges == ERROR_BUCKETS
    # 1e-3 sits exactly on an edge (10^-3 = 10^(-12/4)) and counts in that bucket (le semantics)
    assert cal.counts[ERROR_BUCKETS.index(1e-3)] == 1
    assert cal.z_score(torch.tensor(3e-3)).item() == pytest.approx(0.0)
    assert cal.p_value(torch.tensor(3e-3)).item() == pytest.approx(0.5)
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
