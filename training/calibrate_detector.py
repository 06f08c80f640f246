"""``apudae calibrate-detector``: add the detector's thresholds (models/detector.py) to a bundle calibrated
before the detector existed, in place.

It measures eq. 7's error of every held-out *training* image again with the bundle's DAE (the holdout of
``apudae calibrate``: the same seeded split, recorded in the bundle's provenance), checks that mu and sigma
come out as the bundle records them (else the holdout or the DAE differs, and it refuses), and writes the
thresholds into bundle.json's ``calibration``. Nothing else changes: the weight files and their hashes
stay as they are. Errors (no bundle, no data, a differing holdout) end in one line and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

from apudae.models.bundle import BUNDLE_FILE, BundleError, load_bundle
from apudae.models.calibration import Calibration
from apudae.training.calibrate import calibrate
from apudae.training.data import DataNotFoundError, load_dataset, train_holdout_split
from apudae.training.options import apply_threads

BATCH = 50  # images per DAE pass (224x224 photos need small batches)
TOLERANCE = 1e-3  # relative difference allowed between the recorded and the re-measured mu and sigma


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle directory, e.g. models/mnist")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the data sets (default: $APUDAE_DATA_DIR, else ./data)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")


def recalibrate(bundle_dir: Path, data_dir: str | None = None) -> Calibration:
    """The bundle's calibration with the detector's thresholds measured on its training holdout; ValueError
    when the re-measured mu or sigma differs from the recorded one."""
    bundle = load_bundle(bundle_dir)
    provenance = bundle.meta["provenance"]
    train = load_dataset(provenance["dataset"], "train", data_dir, preprocessing=bundle.preprocessing)
    _, holdout = train_holdout_split(len(train), provenance["recipe"]["holdout"])
    fresh = calibrate(bundle.dae, train.subset(holdout), batch_size=BATCH)
    recorded = bundle.calibration
    for name in ("mu", "sigma"):
        if not math.isclose(getattr(fresh, name), getattr(recorded, name), rel_tol=TOLERANCE) or fresh.n != recorded.n:
            raise ValueError(f"bundle {bundle.name}: the holdout gives {name} = {getattr(fresh, name):.6g} on {fresh.n} "
                             f"images, bundle.json records {getattr(recorded, name):.6g} on {recorded.n}; the data or "
                             "the DAE differ from the bundle's calibration: re-run `apudae calibrate` and `apudae bundle`")
    return replace(recorded, detector=fresh.detector)


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    path = Path(args.bundle)
    try:
        calibration = recalibrate(path, args.data_dir)
    except (BundleError, DataNotFoundError, ValueError) as err:
        print(f"apudae calibrate-detector: {err}", file=sys.stderr)
        return 2
    meta_file = path / BUNDLE_FILE
    meta = json.loads(meta_file.read_text())
    meta["calibration"] = calibration.to_dict()
    meta_file.write_text(json.dumps(meta, indent=1))
    thresholds = ", ".join(f"{rate:g}: {t:.6g}" for rate, t in sorted(calibration.detector.thresholds.items()))
    print(f"{meta['name']}: detector thresholds on {calibration.detector.n} held-out training images "
          f"(false-positive rate: error threshold) {thresholds}")
    return 0
