"""``apudae accuracy``: each bundle's clean test accuracy on the full test split, against its floor."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from apudae.models.bundle import BUNDLE_FILE, load_bundle
from apudae.training.data import load_dataset
from apudae.training.loops import accuracy

# clean test-accuracy floors (CIFAR-10 on the JPEG copy; ImageNet: top-1 of the imported EfficientNet-Lite0)
FLOORS = {"mnist": 0.992, "fashion-mnist": 0.91, "cifar10": 0.88, "imagenet": 0.85}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", default="models", help="folder of bundles (default: models)")
    parser.add_argument("--data-dir", default=None, help="data sets folder (default: $APUDAE_DATA_DIR, else ./data)")


def run(args: argparse.Namespace) -> int:
    failed = 0
    for bundle_dir in sorted(p.parent for p in Path(args.models_dir).glob(f"*/{BUNDLE_FILE}")):
        bundle = load_bundle(bundle_dir)  # checks every hash
        dataset = bundle.meta["provenance"]["dataset"]
        test = load_dataset(dataset, "test", args.data_dir)
        acc = accuracy(bundle.classifier, test, batch_size=50)
        floor = FLOORS.get(dataset)
        ok = floor is None or acc >= floor
        failed += not ok
        print(json.dumps({"bundle": bundle.name, "data": bundle.meta["provenance"]["data"], "test_images": len(test),
                          "clean_test_accuracy": round(acc, 4), "floor": floor, "ok": ok}))
    return 1 if failed else 0
