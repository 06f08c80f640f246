"""``apudae tune``: tune purification settings on the bundle's *training holdout* (never the test split).

    apudae tune --bundle models/cifar10 --epsilon 0.0313725 --samples 500 \\
        --grid '{"gamma": 0.01}' '{"gamma": 0.03}' '{"variant": "E"}'

Each grid point is a set of ``PurifySettings`` overrides; every point runs the same grey-box benchmark
(``run_evaluation``) on the same holdout images, and one markdown line per point is printed, one per ``--compare``
entry (shown the same adversaries), then one each for the DAE used directly and the undefended classifier.
"""
from __future__ import annotations

import argparse
import json

import torch

from apudae.models.bundle import load_bundle
from apudae.training.data import load_dataset, train_holdout_split
from apudae.training.evaluation.config import EvaluationConfig
from apudae.training.evaluation.harness import run_evaluation


def holdout_images(bundle_path: str, data_dir: str | None = None):
    """The holdout part of the training split the bundle was calibrated on, as an ImageSet."""
    bundle = load_bundle(bundle_path)
    meta = bundle.meta["provenance"]
    train = load_dataset(meta["dataset"], "train", data_dir, preprocessing=bundle.preprocessing)
    _, holdout = train_holdout_split(len(train), meta["recipe"]["holdout"], seed=meta.get("seed", 0))
    return train.subset(holdout)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle directory, e.g. models/cifar10")
    parser.add_argument("--grid", nargs="+", required=True, help="JSON objects of PurifySettings overrides")
    parser.add_argument("--compare", default="",
                        help="variants purifying each point's adversaries beside it, e.g. 'B,F:gamma=0.05' (see --compare "
                             "of apudae evaluate): cheaper than grid points, which each make their adversaries anew")
    parser.add_argument("--attacks", default="fgsm,bim", help="comma-separated grey-box attacks (default: fgsm,bim)")
    parser.add_argument("--epsilon", type=float, default=0.1, help="l_inf budget (default: 0.1)")
    parser.add_argument("--samples", type=int, default=500, help="holdout images (default: 500)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--data-dir", help="folder with the data sets (default: $APUDAE_DATA_DIR, else ./data)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    data = holdout_images(args.bundle, args.data_dir)
    attacks = tuple(args.attacks.split(","))
    compare = tuple(entry for entry in args.compare.split(",") if entry)
    print("| settings | " + " | ".join(("clean",) + attacks) + " |")
    for point in args.grid:
        overrides = json.loads(point)
        config = EvaluationConfig(bundle=args.bundle, variant=overrides.pop("variant", None), purify=overrides,
                                  attacks=attacks, epsilons=(args.epsilon,), samples=args.samples, compare=compare)
        summary = run_evaluation(config, data=data)
        print(_row(point, summary, summary["purification"]["variant"], attacks), flush=True)
        for entry in compare:
            print(_row(f"{point} compared: {entry}", summary, entry, attacks), flush=True)
    for defence in ("direct", "none"):  # the same images and attacks at every point
        print(_row(defence, summary, defence, attacks))
    return 0


def _row(label: str, summary: dict, defence: str, attacks: tuple[str, ...]) -> str:
    """One markdown line: ``defence``'s accuracy on clean images and under each attack."""
    accuracy = {c["attack"]: c["accuracy"] for c in summary["cells"] if c["defence"] == defence}
    return f"| {label} | " + " | ".join(f"{accuracy[a]:.3f}" for a in ("clean",) + attacks) + " |"
