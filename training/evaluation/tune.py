"""``apudae tune``: tune purification settings on the bundle's *training holdout* (never the test split).

    apudae tune --bundle models/cifar10 --epsilon 0.0313725 --samples 500 \\
        --grid '{"gamma": 0.01}' '{"gamma": 0.03}' '{"variant": "E"}'

    apudae tune --bundle models/mnist --epsilon 0.3 --samples 100 --attacks bim,counter-b-detector,pgd-eot-detector \\
        --adaptive-steps 10 --adaptive-eot 1 --reduced-reason "tuning" --grid '{}' '{"n": 30}'

Each grid point is a set of ``PurifySettings`` overrides; every point runs the same benchmark
(``run_evaluation``) on the same holdout images, and one markdown line per point is printed, one per ``--compare``
entry (shown the same grey-box adversaries), then one each for the DAE used directly and the undefended classifier.
A column per attack row of the run (one per beta or weight of a swept attack, and the worst case over the
adaptive attacks when there are two or more); with the bundle's detector each entry reads "accuracy / accuracy
with rejection at ``--fpr``" (an attacked image counts as defended when flagged or classified correctly).
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
    parser.add_argument("--attacks", default="fgsm,bim", help="comma-separated attacks of apudae evaluate (default: fgsm,bim)")
    parser.add_argument("--epsilon", type=float, default=0.1, help="l_inf budget (default: 0.1)")
    parser.add_argument("--samples", type=int, default=500, help="holdout images (default: 500)")
    parser.add_argument("--adaptive-steps", type=int, help="steps of the adaptive attacks (see apudae evaluate)")
    parser.add_argument("--adaptive-eot", type=int, help="EOT draws per gradient of the adaptive attacks")
    parser.add_argument("--reduced-reason", default="", help="why the adaptive settings were lowered (required then)")
    parser.add_argument("--resubmissions", type=int, default=1,
                        help="times each adaptive adversary is sent to a randomised purifier (default: 1)")
    parser.add_argument("--fpr", default="0.01",
                        help="false-positive rate of the with-rejection figures, one the detector stores (default: 0.01)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--data-dir", help="folder with the data sets (default: $APUDAE_DATA_DIR, else ./data)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    fpr = f"{float(args.fpr):g}"  # the detector's rates are keyed as "%g" ("0.010" -> "0.01")
    detector = load_bundle(args.bundle).calibration.detector
    if detector is not None and fpr not in {f"{rate:g}" for rate in detector.rates}:
        raise ValueError(f"--fpr {args.fpr}: the detector stores the rates {', '.join(f'{r:g}' for r in detector.rates)}")
    data = holdout_images(args.bundle, args.data_dir)
    attacks = tuple(args.attacks.split(","))
    compare = tuple(entry for entry in args.compare.split(",") if entry)
    columns = None
    for point in args.grid:
        overrides = json.loads(point)
        config = EvaluationConfig(bundle=args.bundle, variant=overrides.pop("variant", None), purify=overrides,
                                  attacks=attacks, epsilons=(args.epsilon,), samples=args.samples, compare=compare,
                                  adaptive_steps=args.adaptive_steps, adaptive_eot=args.adaptive_eot,
                                  reduced_reason=args.reduced_reason, resubmissions=args.resubmissions)
        summary = run_evaluation(config, data=data)
        variant = summary["purification"]["variant"]
        if columns is None:  # every point runs the same attacks, so the first one names the columns
            columns = [c["attack"] for c in summary["cells"] if c["defence"] == variant]
            print("| settings | " + " | ".join(columns) + " |")
        print(_row(point, summary, variant, columns, fpr), flush=True)
        for entry in compare:
            print(_row(f"{point} compared: {entry}", summary, entry, columns, fpr), flush=True)
    for defence in ("direct", "none"):  # the same images and attacks at every point
        print(_row(defence, summary, defence, columns, fpr))
    return 0


def _row(label: str, summary: dict, defence: str, columns: list[str], fpr: str) -> str:
    """One markdown line: ``defence``'s accuracy under each attack row in ``columns`` ("clean" included),
    followed by " / " and its accuracy with rejection at false-positive rate ``fpr`` where the cell has one;
    "—" where the defence has no such row (an adaptive attack on the undefended classifier)."""
    cells = {c["attack"]: c for c in summary["cells"] if c["defence"] == defence}

    def entry(attack: str) -> str:
        if attack not in cells:
            return "—"
        cell = cells[attack]
        rejection = cell.get("with_rejection", {}).get(fpr)
        return f"{cell['accuracy']:.3f}" + (f" / {rejection['accuracy']:.3f}" if rejection else "")

    return f"| {label} | " + " | ".join(entry(a) for a in columns) + " |"
