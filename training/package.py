"""``apudae bundle``: turn a finished work directory into a model bundle (see models/bundle.py).

Exports the classifier to ONNX and checks it against PyTorch (max |delta logit| <= 1e-4),
measures test metrics on the full test split, records provenance and hashes, and
writes the model card.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import save_file

from models.bundle import BUNDLE_FILE, sha256_file
from models.calibration import Calibration
from training.data import load_dataset, train_holdout_split
from training.loops import accuracy, load_trained, per_image_errors
from training.options import add_data_options, apply_threads, workdir_of
from training.recipes import recipe_for

ONNX_TOLERANCE = 1e-4
DATA_LABELS = {"cifar10": "CIFAR-10 (JPEG copy) when read from cifar10-jpeg", "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def export_onnx(classifier: torch.nn.Module, input_shape: tuple[int, ...], path: Path) -> float:
    """Export ``classifier`` (eval) to ONNX with a dynamic batch axis; returns max |delta logit| vs PyTorch.

    Raises ValueError when the exported model differs from PyTorch by more than ONNX_TOLERANCE.
    """
    example = torch.rand(4, *input_shape, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=65536)
    torch.onnx.export(classifier, (example,), str(path), dynamo=True, input_names=["image"],
                      output_names=["logits"], dynamic_shapes={"x": {0: batch}}, external_data=False, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probe = torch.rand(7, *input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = classifier(probe).numpy()
    delta = float(np.abs(session.run(None, {"image": probe.numpy()})[0] - expected).max())
    if delta > ONNX_TOLERANCE:
        raise ValueError(f"ONNX export differs from PyTorch by {delta:.2e} > {ONNX_TOLERANCE:g}")
    return delta


def machine_description() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_bundle(out: Path, name: str, dae: torch.nn.Module, classifier: torch.nn.Module, calibration: Calibration,
                 classes: list[str], purification: dict, provenance: dict, metrics: dict,
                 adversarial_classifier: torch.nn.Module | None = None, card: str = "") -> dict:
    """Write the bundle directory ``out`` and return its bundle.json contents."""
    out.mkdir(parents=True, exist_ok=True)
    input_shape = [dae.config.in_channels, *provenance["image_size"]]
    weights = {"dae.safetensors": dae, "classifier.safetensors": classifier}
    if adversarial_classifier is not None:
        weights["adversarial_classifier.safetensors"] = adversarial_classifier
    for file, model in weights.items():
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / file))
    onnx_delta = export_onnx(classifier.eval(), tuple(input_shape), out / "classifier.onnx")
    files = sorted([*weights, "classifier.onnx"])
    meta = {
        "name": name, "format_version": 1, "input_shape": input_shape, "classes": classes,
        "calibration": calibration.to_dict(), "dae": dae.config.to_dict(), "classifier": classifier.config.to_dict(),
        **({"adversarial_classifier": adversarial_classifier.config.to_dict()}
           if adversarial_classifier is not None and adversarial_classifier.config != classifier.config else {}),
        "purification": purification, "provenance": provenance,
        "metrics": {**metrics, "onnx_max_abs_logit_delta": onnx_delta},
        "files": {f: sha256_file(out / f) for f in files},
    }
    (out / BUNDLE_FILE).write_text(json.dumps(meta, indent=1))
    (out / "README.md").write_text(card or model_card(meta))
    return meta


def _noise_by_epoch(provenance: dict) -> list[str]:
    """Model-card lines on the training noise: the DAE's sigma_max (eq. 5) when its epochs did not all use the
    same, and the plain classifier's noise augmentation (s_max, 0 = none) when any epoch used some."""
    history = provenance.get("history", {})
    sigmas = [record.get("sigma_max") for record in history.get("dae", [])]
    noise = [record.get("noise_max", 0.0) for record in history.get("classifier", [])]
    lines = []
    if len(set(sigmas)) > 1:
        lines.append(f"- DAE training noise sigma_max by epoch: {', '.join(str(s) for s in sigmas)}")
    if any(noise):
        lines.append("- Classifier training noise X + s*N(0,1), s ~ U[0, s_max], s_max by epoch: "
                     + ", ".join(str(s) for s in noise))
    return lines


def model_card(meta: dict) -> str:
    p, m, c = meta["provenance"], meta["metrics"], meta["calibration"]
    lines = [
        f"# Model card: {meta['name']}", "",
        f"APuDAE defence for {p['data']} images of shape {meta['input_shape']} (C, H, W), values in [0, 1].", "",
        "## Contents",
        f"- DAE (paper Table 1, eq. 5-6): N={meta['dae']['depth']}, width {meta['dae']['width']}, "
        f"trained on X + sigma*N(0,1), sigma ~ U[0, {meta['dae']['sigma_max']}].",
        f"- Classifier `{meta['classifier']['arch']}` (normalisation inside), also as `classifier.onnx`.",
        f"- Calibration (eq. 7) on {c['n']} held-out *training* images: mu = {c['mu']:.6g}, sigma = {c['sigma']:.6g}.",
        f"- Purification defaults: {json.dumps(meta['purification'])}.", "",
        "## Test metrics (full test split)",
        *[f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in m.items()], "",
        "## Provenance",
        f"- data: {p['data']}; splits: {json.dumps(p['splits'])}; seed {p['seed']}; git {p['git_commit'][:12]}",
        f"- epochs: {json.dumps(p['epochs'])}; wall time (s): {json.dumps(p['wall_seconds'])}",
        *_noise_by_epoch(p),
        f"- machine: {p['machine']['cpu']} ({p['machine']['cores']} cores), torch {p['machine']['torch']}", "",
        "## Limits",
        "Grey-box robustness does not imply robustness to adaptive attacks; see docs/RESULTS.md.", "",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    parser.add_argument("--out", default=None, help="bundle directory (default: models/<dataset>)")


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    workdir = workdir_of(args)
    classifier, clf_meta = load_trained(workdir, "classifier")
    # test-time choices (flip averaging, purification defaults) come from the current recipe, even for
    # runs trained before they were set
    current = recipe_for(args.dataset)
    flip_average = current.classifier.flip_average
    classifier.config = replace(classifier.config, flip_average=flip_average)
    dae, dae_meta = load_trained(workdir, "dae")
    try:
        adversarial, adv_meta = load_trained(workdir, "adversarial")  # its own architecture (width) may differ
        adversarial.config = replace(adversarial.config, flip_average=flip_average)
    except FileNotFoundError as missing:
        print(f"no adversarially trained baseline in this bundle: {missing}")
        adversarial, adv_meta = None, None
    recipe = clf_meta["recipe"]
    train = load_dataset(args.dataset, "train", args.data_dir, args.download)
    test = load_dataset(args.dataset, "test", args.data_dir, args.download)
    train_index, holdout_index = train_holdout_split(len(train), recipe["holdout"])
    calibration_file = workdir / "calibration.json"
    if not calibration_file.is_file():
        raise FileNotFoundError(f"no {calibration_file}: run `apudae calibrate --dataset {args.dataset}` first")
    calibration = Calibration.from_dict(json.loads(calibration_file.read_text()))
    metrics = {"clean_test_accuracy": accuracy(classifier, test),
               "dae_test_mean_reconstruction_error": per_image_errors(dae, test).mean().item()}
    if adversarial is not None:
        metrics["adversarial_classifier_clean_test_accuracy"] = accuracy(adversarial, test)
    parts = {"classifier": clf_meta, "dae": dae_meta, **({"adversarial": adv_meta} if adv_meta else {})}
    provenance = {
        "data": DATA_LABELS.get(args.dataset, args.dataset), "dataset": args.dataset,
        "image_size": list(train.images.shape[2:]),
        "splits": {"train": len(train_index), "holdout_calibration": len(holdout_index), "test": len(test)},
        "epochs": {k: v["epoch"] for k, v in parts.items()},
        "wall_seconds": {k: round(v["wall_seconds"], 1) for k, v in parts.items()},
        "seed": clf_meta["seed"], "git_commit": git_commit(), "machine": machine_description(),
        "recipe": recipe, "history": {k: v["history"] for k, v in parts.items()},
    }
    out = Path(args.out or f"models/{args.dataset}")
    meta = write_bundle(out, args.dataset, dae, classifier, calibration, train.classes, current.purification,
                        provenance, metrics, adversarial)
    print(json.dumps({"bundle": str(out), **meta["metrics"], "mu": calibration.mu, "sigma": calibration.sigma}))
    return 0
