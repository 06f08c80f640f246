"""``apudae accuracy``: each bundle's clean test accuracy on the full test split, against its floor."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from apudae.models.bundle import BUNDLE_FILE, load_bundle
from apudae.training.data import ImageSet, load_dataset
from apudae.training.loops import accuracy

PROGRESS_CHUNK = 2000  # images between two updates of the progress bar

# clean test-accuracy floors (CIFAR-10 on the JPEG copy; ImageNet: top-1 of the imported EfficientNet-Lite0)
FLOORS = {"mnist": 0.992, "fashion-mnist": 0.91, "cifar10": 0.88, "imagenet": 0.85}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", default="models", help="folder of bundles (default: models)")
    parser.add_argument("--data-dir", default=None, help="data sets folder (default: $APUDAE_DATA_DIR, else ./data)")


def accuracy_with_progress(classifier, test: ImageSet, name: str, batch_size: int) -> float:
    """``training.loops.accuracy`` of ``classifier`` on ``test`` in batches of ``batch_size``, taken chunk by
    chunk under a tqdm bar (stderr) that counts images."""
    correct = 0
    with tqdm(total=len(test), unit="image", desc=f"accuracy {name}", leave=False) as bar:
        for start in range(0, len(test), PROGRESS_CHUNK):
            chunk = test.subset(slice(start, start + PROGRESS_CHUNK))
            correct += round(accuracy(classifier, chunk, batch_size=batch_size) * len(chunk))
            bar.update(len(chunk))
    return correct / len(test)


def run(args: argparse.Namespace) -> int:
    failed = 0
    for bundle_dir in sorted(p.parent for p in Path(args.models_dir).glob(f"*/{BUNDLE_FILE}")):
        bundle = load_bundle(bundle_dir)  # checks every hash
        dataset = bundle.meta["provenance"]["dataset"]
        test = load_dataset(dataset, "test", args.data_dir, preprocessing=bundle.preprocessing)
        acc = accuracy_with_progress(bundle.classifier, test, bundle.name, batch_size=50)
        floor = FLOORS.get(dataset)
        ok = floor is None or acc >= floor
        failed += not ok
        print(json.dumps({"bundle": bundle.name, "data": bundle.meta["provenance"]["data"], "test_images": len(test),
                          "clean_test_accuracy": round(acc, 4), "floor": floor, "ok": ok}))
    return 1 if failed else 0
