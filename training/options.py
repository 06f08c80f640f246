"""Command-line options shared by the offline subcommands."""
from __future__ import annotations

import argparse

import torch

from apudae.training.data import DATASETS


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True,
                        help=f"one of {', '.join(DATASETS)} (or imagefolder:<path> where supported)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the data sets (default: $APUDAE_DATA_DIR, else ./data)")
    parser.add_argument("--download", action="store_true", help="let torchvision download missing data (needs internet)")
    parser.add_argument("--workdir", default=None, help="where checkpoints and logs go (default: runs/<dataset>)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, data order, noise and augmentation")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")


def apply_threads(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def workdir_of(args: argparse.Namespace):
    from pathlib import Path

    return Path(args.workdir or f"runs/{args.dataset}")
