"""``apudae calibrate``: mu, sigma and histogram of the clean per-image reconstruction error (eq. 7), and
the detector's thresholds on the same errors (models/detector.py).

Measured on the held-out part of the *training* split (the DAE never trained on it);
the test split is never used for calibration.
"""
from __future__ import annotations

import argparse
import json

import torch

from apudae.models.calibration import Calibration
from apudae.training.data import ImageSet, load_dataset, train_holdout_split
from apudae.training.import_classifier import imported_preprocessing
from apudae.training.loops import load_trained, per_image_errors
from apudae.training.options import add_data_options, apply_threads, workdir_of


def calibrate(dae: torch.nn.Module, holdout: ImageSet, batch_size: int = 500) -> Calibration:
    """The calibration (with the detector's thresholds) of ``dae`` on the clean ``holdout`` images."""
    return Calibration.from_errors(per_image_errors(dae, holdout, batch_size))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    workdir = workdir_of(args)
    dae, meta = load_trained(workdir, "dae")
    data = load_dataset(args.dataset, "train", args.data_dir, args.download, imported_preprocessing(workdir))
    _, holdout_index = train_holdout_split(len(data), meta["recipe"]["holdout"])
    calibration = calibrate(dae, data.subset(holdout_index))
    (workdir / "calibration.json").write_text(json.dumps(calibration.to_dict(), indent=1))
    print(f"{args.dataset}: mu={calibration.mu:.6g} sigma={calibration.sigma:.6g} on {calibration.n} held-out training images")
    return 0
