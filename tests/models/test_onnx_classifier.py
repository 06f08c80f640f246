"""Bring-your-own classifier: the ONNX contract checks, the normalisation wrapper, the differentiable copy,
`apudae import-classifier` (ONNX and PyTorch sources) and the bundle round trip with declared preprocessing."""
from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import PHOTO_PREPROCESSING, PHOTO_SHAPE, import_tiny_photo_classifier, make_tiny_photo_classifier
from onnx import helper

from apudae.models.bundle import export_onnx, load_bundle
from apudae.models.onnx_classifier import (OnnxClassifierError, check_classifier, differentiable_copy, parity,
                                           wrap_normalisation)
from apudae.models.preprocessing import Preprocessing
from apudae.training import import_classifier as importer


@pytest.fixture(scope="module")
def user_onnx(tmp_path_factory):
    """The tiny photo classifier exported to ONNX as a user would have it (expects normalised input)."""
    path = tmp_path_factory.mktemp("user") / "user.onnx"
    export_onnx(make_tiny_photo_classifier(), PHOTO_SHAPE, path)
    return path


def _run(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_a_valid_classifier_passes_and_names_its_input(user_onnx):
    assert check_classifier(onnx.load(str(user_onnx)), PHOTO_SHAPE, 12) == "image"


@pytest.mark.parametrize("shape, classes, message", [
    ((3, 64, 64), 12, "axis 2 differs"),
    ((1, 32, 32), 12, "axis 1 differs"),
    (PHOTO_SHAPE, 10, "gives 12 logits per image, but 10 class names"),
])
def test_a_mismatch_with_the_given_shape_or_classes_is_refused(user_onnx, shape, classes, message):
    with pytest.raises(OnnxClassifierError, match=message):
        check_classifier(onnx.load(str(user_onnx)), shape, classes)


def _graph_model(inputs, outputs, nodes) -> onnx.ModelProto:
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)])


def test_two_inputs_a_3d_output_and_an_invalid_file_are_refused():
    image = helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, ["B", 3, 32, 32])
    other = helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, ["B", 3, 32, 32])
    summed = helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, ["B", 3, 32, 32])
    two = _graph_model([image, other], [summed], [helper.make_node("Add", ["a", "b"], ["s"])])
    with pytest.raises(OnnxClassifierError, match="has 2 inputs"):
        check_classifier(two, PHOTO_SHAPE, 12)
    identity = _graph_model([image], [summed], [helper.make_node("Identity", ["a"], ["s"])])
    with pytest.raises(OnnxClassifierError, match="output has rank 4"):
        check_classifier(identity, PHOTO_SHAPE, 12)
    broken = _graph_model([image], [summed], [helper.make_node("NoSuchOp", ["a"], ["s"])])
    with pytest.raises(OnnxClassifierError, match="not a valid ONNX model"):
        check_classifier(broken, PHOTO_SHAPE, 12)


def test_the_wrapper_normalises_before_the_users_graph(user_onnx, tmp_path):
    wrapped = tmp_path / "wrapped.onnx"
    onnx.save(wrap_normalisation(onnx.load(str(user_onnx)), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), str(wrapped))
    x = torch.rand(2, *PHOTO_SHAPE, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(_run(wrapped, x), _run(user_onnx, (x - 0.5) / 0.25), atol=1e-5)


def test_the_differentiable_copy_matches_onnxruntime_and_has_input_gradients(user_onnx):
    copy = differentiable_copy(user_onnx, PHOTO_SHAPE)
    assert parity(copy, user_onnx, PHOTO_SHAPE) <= 1e-4
    x = torch.rand(2, *PHOTO_SHAPE, requires_grad=True)
    copy(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in copy.parameters())


def test_a_graph_onnx2torch_cannot_convert_is_refused_clearly(tmp_path):
    image = helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, ["B", 3, 32, 32])
    logits = helper.make_tensor_value_info("l", onnx.TensorProto.FLOAT, ["B", 3])
    nodes = [helper.make_node("ReduceMean", ["a"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Hardmax", ["m"], ["l"])]
    path = tmp_path / "hardmax.onnx"
    onnx.save(_graph_model([image], [logits], nodes), str(path))
    with pytest.raises(OnnxClassifierError, match="no differentiable copy"):
        differentiable_copy(path, PHOTO_SHAPE)


def test_import_from_onnx_wraps_the_normalisation_and_records_the_preprocessing(tmp_path):
    record = import_tiny_photo_classifier(tmp_path)
    assert record["classes"][11] == "photo class 11" and record["input_shape"] == list(PHOTO_SHAPE)
    assert record["preprocessing"] == PHOTO_PREPROCESSING
    assert record["differentiable_copy_max_abs_logit_delta"] <= 1e-4
    assert json.loads((tmp_path / importer.IMPORT_FILE).read_text()) == record
    x = torch.rand(2, *PHOTO_SHAPE, generator=torch.Generator().manual_seed(4))
    np.testing.assert_allclose(_run(tmp_path / "classifier.onnx", x), _run(tmp_path / "user.onnx", (x - 0.5) / 0.5),
                               atol=1e-5)


def _import(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    importer.add_arguments(parser)
    return importer.run(parser.parse_args(list(argv)))


def test_import_from_pytorch_code_and_a_pickled_state_dict(tmp_path, monkeypatch, capsys):
    torch.save(make_tiny_photo_classifier().state_dict(), tmp_path / "weights.pth")
    (tmp_path / "classes.tsv").write_text("index\twnid\tname\n" + "".join(f"{i}\tw{i}\tname {i}\n" for i in range(12)))
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "user_net.py").write_text(
        "import torch\n"
        "def build(classes):\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(),\n"
        "        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, classes))\n")
    assert _import("--torch", "user_net:build", "--torch-args", "[12]", "--weights", str(tmp_path / "weights.pth"),
                   "--classes", str(tmp_path / "classes.tsv"), "--input-size", "32", "--workdir",
                   str(tmp_path / "work")) == 0
    record = json.loads((tmp_path / "work" / importer.IMPORT_FILE).read_text())
    assert record["classes"][0] == "name 0" and len(record["classes"]) == 12 and record["preprocessing"] is None
    assert (tmp_path / "work" / "classifier_source.safetensors").is_file()
    x = torch.rand(2, *PHOTO_SHAPE)
    with torch.no_grad():
        expected = make_tiny_photo_classifier()(x).numpy()
    np.testing.assert_allclose(_run(tmp_path / "work" / "classifier.onnx", x), expected, atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--input-size", "64"], "axis 2 differs"),
    (["--input-size", "32", "--mean", "0.5"], "give --mean and --std together"),
    (["--input-size", "32", "--mean", "0.5", "--std", "0.5"], "need 3 values each"),
    (["--input-size", "32", "--weights", "w.pth"], "--weights goes with --torch"),
])
def test_bad_import_options_end_in_one_line(user_onnx, tmp_path, capsys, argv, message):
    (tmp_path / "classes.txt").write_text("\n".join(f"c{i}" for i in range(12)))
    assert _import("--onnx", str(user_onnx), "--classes", str(tmp_path / "classes.txt"), "--workdir",
                   str(tmp_path / "work"), *argv) == 2
    out = capsys.readouterr().out.strip()
    assert message in out and len(out.splitlines()) == 1


def test_a_photo_bundle_round_trips_with_its_preprocessing(photo_models_dir):
    bundle = load_bundle(photo_models_dir / "photo")
    assert bundle.preprocessing == Preprocessing(**PHOTO_PREPROCESSING)
    assert "classifier.safetensors" not in bundle.meta["files"] and len(bundle.classes) == 12
    x = torch.rand(3, *PHOTO_SHAPE)
    with torch.no_grad():
        np.testing.assert_allclose(bundle.classifier(x).numpy(), _run(bundle.onnx_path, x), atol=1e-4)
    assert "Preprocessing of uploads" in (photo_models_dir / "photo" / "README.md").read_text()
