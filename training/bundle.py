"""``apudae bundle``: turn a finished work directory into a model bundle (format: models/bundle.py).

Measures test metrics on the full test split, records provenance, and writes the bundle with
``write_bundle`` (ONNX export checked against PyTorch, hashes, model card).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from apudae.models.bundle import write_bundle
from apudae.models.calibration import Calibration
from apudae.models.onnx_classifier import differentiable_copy
from apudae.training.data import IMAGENET_SPLIT, load_dataset, train_holdout_split
from apudae.training.import_classifier import IMPORT_FILE, imported_preprocessing
from apudae.training.loops import accuracy, load_trained, per_image_errors
from apudae.training.options import add_data_options, apply_threads, workdir_of
from apudae.training.provenance import git_commit, machine_description
from apudae.training.recipes import recipe_for

DATA_LABELS = {"cifar10": "CIFAR-10 (JPEG copy) when read from cifar10-jpeg", "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST",
               "imagenet": "ImageNet (ILSVRC-2012 sample, one image per class)"}
BATCH = 50  # images per forward pass when measuring the test metrics (224x224 photos need small batches)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    parser.add_argument("--out", default=None,
                        help="bundle directory (default: models/<dataset>, for imagefolder:<path> the folder's name)")


def _trained_classifiers(workdir: Path, dataset: str) -> tuple:
    """(classifier, its meta, adversarial baseline or None, its meta or None) of a work directory that trained them.
    Test-time choices (flip averaging) come from the current recipe, even for runs trained before they were set."""
    classifier, clf_meta = load_trained(workdir, "classifier")
    flip_average = recipe_for(dataset).classifier.flip_average
    classifier.config = replace(classifier.config, flip_average=flip_average)
    try:
        adversarial, adv_meta = load_trained(workdir, "adversarial")  # its own architecture (width) may differ
        adversarial.config = replace(adversarial.config, flip_average=flip_average)
    except FileNotFoundError as missing:
        print(f"no adversarially trained baseline in this bundle: {missing}")
        adversarial, adv_meta = None, None
    return classifier, clf_meta, adversarial, adv_meta


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    workdir = workdir_of(args)
    current = recipe_for(args.dataset)
    imported_file = workdir / IMPORT_FILE
    imported = json.loads(imported_file.read_text()) if imported_file.is_file() else None
    dae, dae_meta = load_trained(workdir, "dae")
    if imported is None:
        classifier, clf_meta, adversarial, adv_meta = _trained_classifiers(workdir, args.dataset)
    else:
        classifier = differentiable_copy(workdir / "classifier.onnx", tuple(imported["input_shape"]))
        clf_meta, adversarial, adv_meta = None, None, None
    recipe = dae_meta["recipe"]
    preprocessing = imported_preprocessing(workdir)
    train = load_dataset(args.dataset, "train", args.data_dir, args.download, preprocessing)
    test = load_dataset(args.dataset, "test", args.data_dir, args.download, preprocessing)
    classes = imported["classes"] if imported else train.classes
    train_index, holdout_index = train_holdout_split(len(train), recipe["holdout"])
    calibration_file = workdir / "calibration.json"
    if not calibration_file.is_file():
        raise FileNotFoundError(f"no {calibration_file}: run `apudae calibrate --dataset {args.dataset}` first")
    calibration = Calibration.from_dict(json.loads(calibration_file.read_text()))
    metrics = {"clean_test_accuracy": accuracy(classifier, test, batch_size=BATCH),
               "dae_test_mean_reconstruction_error": per_image_errors(dae, test, batch_size=BATCH).mean().item()}
    if adversarial is not None:
        metrics["adversarial_classifier_clean_test_accuracy"] = accuracy(adversarial, test)
    parts = {"dae": dae_meta, **({"classifier": clf_meta} if clf_meta else {}),
             **({"adversarial": adv_meta} if adv_meta else {})}
    splits = {"train": len(train_index), "holdout_calibration": len(holdout_index), "test": len(test)}
    if args.dataset == "imagenet":
        splits["imagenet_sample_split"] = IMAGENET_SPLIT
    provenance = {
        "data": DATA_LABELS.get(args.dataset, args.dataset), "dataset": args.dataset,
        "image_size": list(train.images.shape[2:]), "splits": splits,
        "epochs": {k: v["epoch"] for k, v in parts.items()},
        "wall_seconds": {k: round(v["wall_seconds"], 1) for k, v in parts.items()},
        "seed": dae_meta["seed"], "git_commit": git_commit(), "machine": machine_description(),
        "recipe": recipe, "history": {k: v["history"] for k, v in parts.items()},
    }
    name = Path(args.dataset.partition(":")[2]).name if args.dataset.startswith("imagefolder:") else args.dataset
    out = Path(args.out or f"models/{name}")
    meta = write_bundle(out, name, dae, classifier, calibration, classes, current.purification,
                        provenance, metrics, adversarial, imported=imported, imported_onnx=workdir / "classifier.onnx",
                        purification_budgets=current.purification_budgets)
    print(json.dumps({"bundle": str(out), **meta["metrics"], "mu": calibration.mu, "sigma": calibration.sigma}))
    return 0
