"""The ``apudae`` command: one entry point, one module per subcommand.

Each subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``;
it is imported only when its subcommand runs, so ``apudae --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from apudae.service.allocator import tune_allocator

COMMANDS: dict[str, tuple[str, str]] = {
    "import-classifier": ("apudae.training.import_classifier", "bring your own classifier (ONNX, or PyTorch code + weights) into a work directory"),
    "train": ("apudae.training.train", "train a classifier, the DAE (eq. 5) or the adversarially trained baseline"),
    "calibrate": ("apudae.training.calibrate", "measure mu/sigma of the clean reconstruction error (eq. 7) on held-out training images"),
    "calibrate-detector": ("apudae.training.calibrate_detector", "add the detector's thresholds (false-positive rates 0.1/1/5 %) to a bundle, in place"),
    "bundle": ("apudae.training.bundle", "export ONNX, measure test metrics and write a model bundle to models/<name>"),
    "unbundle": ("apudae.training.unbundle", "write a bundle's trained parts back into a work directory, to train on or re-bundle"),
    "accuracy": ("apudae.training.accuracy", "print each shipped bundle's clean test accuracy on the full test split"),
    "evaluate": ("apudae.training.evaluation.evaluate", "run the attack benchmarks against a bundle and write JSON, markdown and plots"),
    "tune": ("apudae.training.evaluation.tune", "grid-search purification settings on a bundle's training holdout"),
    "attack": ("apudae.training.attack_image", "write a BIM-attacked copy of one image against a bundle's classifier, to try the service"),
    "serve": ("apudae.service.serve", "start the HTTP service (uvicorn) on the bundles in the model directory"),
    "bench": ("apudae.training.bench", "measure the purifier and the served path (throughput, latency, FLOP/s)"),
}


def _top_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="apudae",
        description="Adversarial purification with denoising autoencoders (APuDAE).",
        epilog=f"commands:\n{listing}\n\nRun `apudae COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    command = top.parse_args(argv[:1]).command
    tune_allocator()
    module_name, summary = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"apudae {command}", description=summary)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    sys.exit(main())
