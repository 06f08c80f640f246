"""``apudae import-classifier``: bring your own classifier into a work directory, ready to bundle.

From an ONNX file (``--onnx model.onnx``) or from PyTorch code plus weights (``--torch
package.module:factory`` with ``--weights file.pth``; the weights are read once with
torch's weights-only loader, written as safetensors, and the module is exported to ONNX).
Either way the result is ``<workdir>/classifier.onnx`` meeting the bundle contract (float32 NCHW in
[0, 1] -> logits; ``--mean``/``--std`` wrap a graph that expects normalised input) and
``<workdir>/imported_classifier.json`` with the class names, input shape, preprocessing, the source's
SHA-256 and the measured parity of the differentiable copy (models/onnx_classifier.py).
"""
from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import onnx
import torch
from safetensors.torch import load_file, save_file

from apudae.models.bundle import export_onnx, sha256_file
from apudae.models.onnx_classifier import OnnxClassifierError, check_classifier, differentiable_copy, parity, wrap_normalisation
from apudae.models.preprocessing import INTERPOLATIONS, Preprocessing

IMPORT_FILE = "imported_classifier.json"


class ImportOptionError(ValueError):
    """An import option is wrong; the message says what to fix."""


def imported_preprocessing(workdir: Path) -> Preprocessing | None:
    """The preprocessing recorded by an import into ``workdir``; None when there was no import or it declared none."""
    record = workdir / IMPORT_FILE
    return Preprocessing.from_dict(json.loads(record.read_text())["preprocessing"]) if record.is_file() else None


def read_class_names(path: Path) -> list[str]:
    """Class names in index order: one per line, or a .tsv whose last column is the name (e.g. index, id, name),
    its first row a header when that row's first column is not a number."""
    if not path.is_file():
        raise ImportOptionError(f"--classes {path}: no such file; give a text file with one class name per line")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".tsv":
        rows = [line.split("\t") for line in lines]
        names = [row[-1].strip() for row in rows[0 if rows[0][0].strip().isdigit() else 1:]]
    else:
        names = [line.strip() for line in lines]
    if len(names) < 2:
        raise ImportOptionError(f"--classes {path} names {len(names)} class; a classifier needs at least two")
    return names


def _torch_module(spec: str, args: list, weights: Path, workdir: Path) -> torch.nn.Module:
    """Build ``module:factory(*args)`` and load ``weights`` into it through a one-time safetensors copy."""
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ImportOptionError(f"--torch {spec!r}: write it as package.module:factory (e.g. "
                           "efficientnet_lite_pytorch:EfficientNet.from_name)")
    try:
        factory = importlib.import_module(module_name)
        for part in attribute.split("."):
            factory = getattr(factory, part)
    except (ImportError, AttributeError) as err:
        raise ImportOptionError(f"--torch {spec!r} cannot be imported ({err}); install the package that defines it") from None
    if not weights.is_file():
        raise ImportOptionError(f"--weights {weights}: no such file")
    state = torch.load(weights, map_location="cpu", weights_only=True)  # the one place a pickle is read
    if not isinstance(state, dict):
        raise ImportOptionError(f"--weights {weights} holds a {type(state).__name__}, not a state dict")
    converted = workdir / "classifier_source.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(converted))
    model = factory(*args)
    model.load_state_dict(load_file(str(converted)))
    return model.eval()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", type=Path, help="the classifier as an ONNX file")
    source.add_argument("--torch", help="PyTorch factory package.module:callable building the network")
    parser.add_argument("--torch-args", default="[]", help="JSON list of the factory's arguments (default: [])")
    parser.add_argument("--weights", type=Path, help="with --torch: the state-dict file (.pth/.pt, or .safetensors)")
    parser.add_argument("--classes", type=Path, required=True, help="class names: one per line, or .tsv (last column)")
    parser.add_argument("--input-size", type=int, required=True, help="the model's input height = width, e.g. 224")
    parser.add_argument("--channels", type=int, default=3, help="input channels (default: 3)")
    parser.add_argument("--mean", type=float, nargs="+", help="per-channel mean the model expects its input normalised by")
    parser.add_argument("--std", type=float, nargs="+", help="per-channel std (with --mean)")
    parser.add_argument("--resize", type=int, help="preprocessing: shorter side resized to this (default: no resize)")
    parser.add_argument("--interpolation", default="bicubic", choices=sorted(INTERPOLATIONS),
                        help="preprocessing resize interpolation (default: bicubic)")
    parser.add_argument("--workdir", type=Path, required=True, help="work directory of the bundle, e.g. runs/imagenet")


def import_classifier(args: argparse.Namespace) -> dict:
    """Write classifier.onnx and imported_classifier.json into ``args.workdir``; returns the JSON's contents."""
    classes = read_class_names(args.classes)
    shape = (args.channels, args.input_size, args.input_size)
    if (args.mean is None) != (args.std is None):
        raise ImportOptionError("give --mean and --std together, or neither (a model normalising inside needs neither)")
    if args.mean is not None and not len(args.mean) == len(args.std) == args.channels:
        raise ImportOptionError(f"--mean and --std need {args.channels} values each (one per channel)")
    if args.weights is not None and args.torch is None:
        raise ImportOptionError("--weights goes with --torch; an ONNX file holds its own weights")
    preprocessing = Preprocessing(args.resize, args.input_size, args.interpolation) if args.resize else None
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = args.workdir / "classifier.onnx"
    if args.torch:
        if args.weights is None:
            raise ImportOptionError("--torch needs --weights, the trained state dict")
        model = _torch_module(args.torch, json.loads(args.torch_args), args.weights, args.workdir)
        export_onnx(model, shape, out)
        source = {"torch": args.torch, "torch_args": json.loads(args.torch_args), "weights": args.weights.name,
                  "weights_sha256": sha256_file(args.weights)}
    else:
        if not args.onnx.is_file():
            raise ImportOptionError(f"--onnx {args.onnx}: no such file")
        source = {"onnx": args.onnx.name, "onnx_sha256": sha256_file(args.onnx)}
    graph = onnx.load(str(out if args.torch else args.onnx))
    check_classifier(graph, shape, len(classes), source=str(args.onnx or args.torch))
    if args.mean is not None:
        graph = wrap_normalisation(graph, tuple(args.mean), tuple(args.std))
    onnx.save(graph, str(out))
    copy = differentiable_copy(out, shape)
    record = {"classes": classes, "input_shape": list(shape),
              "preprocessing": preprocessing.to_dict() if preprocessing else None,
              "normalisation": {"mean": args.mean, "std": args.std} if args.mean else None, "source": source,
              "differentiable_copy_max_abs_logit_delta": parity(copy, out, shape)}
    (args.workdir / IMPORT_FILE).write_text(json.dumps(record, indent=1))
    return record


def run(args: argparse.Namespace) -> int:
    try:
        record = import_classifier(args)
    except (ImportOptionError, OnnxClassifierError) as err:
        print(f"apudae import-classifier: {err}")
        return 2
    print(json.dumps({"workdir": str(args.workdir), "classes": len(record["classes"]),
                      "input_shape": record["input_shape"], "preprocessing": record["preprocessing"],
                      "max_abs_logit_delta": record["differentiable_copy_max_abs_logit_delta"]}))
    return 0
