"""``apudae unbundle``: write a bundle's trained parts back into a work directory as finished runs.

With it a shipped bundle can be trained on (``apudae train --part dae --epochs N`` resumes from it), gain
a part it lacks (``--part adversarial``) and be packaged again (``apudae bundle``) without the original
``runs/`` folder. Each part becomes ``<workdir>/<part>.safetensors`` + ``.json`` at the epoch, history,
wall time and recipe recorded in the bundle's provenance, and the calibration ``calibration.json``; an
imported classifier becomes the files ``apudae import-classifier`` writes.
A bundle holds no optimizer state: a run resumed from it starts with fresh optimizer moments (SGD
momentum, Adam's moments), unlike an uninterrupted run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from apudae.models.bundle import Bundle, load_bundle
from apudae.training.checkpoint import save_checkpoint
from apudae.training.import_classifier import IMPORT_FILE
from apudae.training.loops import EPOCHS_KEY, make_optimizer

BUNDLE_PART_FILES = {"classifier": "classifier", "dae": "dae", "adversarial": "adversarial_classifier"}


def unbundle(bundle: Bundle, workdir: Path) -> list[str]:
    """Write every trained part of ``bundle`` and its calibration into ``workdir``; returns the parts written."""
    provenance = bundle.meta["provenance"]
    workdir.mkdir(parents=True, exist_ok=True)
    written = []
    imported = bundle.meta["classifier"].get("format") == "onnx"
    if imported:
        _write_import(bundle, workdir)
        written.append("imported classifier")
    for part, attribute in BUNDLE_PART_FILES.items():
        if imported and part == "classifier":  # before getattr: that would build the differentiable copy
            continue
        model = getattr(bundle, attribute)
        if model is None:
            continue
        epochs = provenance["epochs"][part]
        recipe = {**provenance["recipe"], EPOCHS_KEY[part]: epochs}
        history = provenance["history"][part]
        if part == "adversarial":  # the provenance recipe is the classifier's: the baseline may differ (width)
            recipe["classifier"] = model.config.to_dict()
        if part == "dae":  # the provenance recipe is the classifier's: a DAE trained on may differ (sigma_max)
            recipe["dae"] = bundle.dae.config.to_dict()
            # bundles from before epochs recorded their noise trained every epoch on the config's
            history = [{"sigma_max": bundle.dae.config.sigma_max, **record} for record in history]
        meta = {"epoch": epochs, "history": history,
                "wall_seconds": provenance["wall_seconds"][part], "seed": provenance["seed"], "recipe": recipe,
                "part": part, "restored_from_bundle": str(bundle.path)}
        model.requires_grad_(True)
        save_checkpoint(workdir / part, model, make_optimizer(part, model, recipe), meta)
        written.append(part)
    (workdir / "calibration.json").write_text(json.dumps(bundle.calibration.to_dict(), indent=1))
    return written


def _write_import(bundle: Bundle, workdir: Path) -> None:
    """The files ``apudae import-classifier`` writes (classifier.onnx and its record), from a bundle whose
    classifier was imported: the ONNX graph as it is, the record from bundle.json."""
    meta = bundle.meta
    (workdir / "classifier.onnx").write_bytes(bundle.onnx_path.read_bytes())
    record = {"classes": meta["classes"], "input_shape": meta["input_shape"], "preprocessing": meta.get("preprocessing"),
              "normalisation": meta["classifier"]["normalisation"], "source": meta["classifier"]["source"],
              "differentiable_copy_max_abs_logit_delta": meta["metrics"]["onnx_max_abs_logit_delta"]}
    (workdir / IMPORT_FILE).write_text(json.dumps(record, indent=1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle directory, e.g. models/cifar10")
    parser.add_argument("--workdir", required=True, help="work directory to write the runs into, e.g. runs/cifar10")


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    parts = unbundle(load_bundle(args.bundle), workdir)
    print(json.dumps({"workdir": str(workdir), "parts": parts, "calibration": str(workdir / "calibration.json")}))
    return 0
