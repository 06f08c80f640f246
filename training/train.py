"""``apudae train``: train one part of a bundle, resumably, in a work directory."""
from __future__ import annotations

import argparse
from dataclasses import replace

from apudae.training.data import DATASETS, load_dataset, train_holdout_split
from apudae.training.import_classifier import imported_preprocessing
from apudae.training.loops import PARTS, train_part
from apudae.training.options import add_data_options, apply_threads, workdir_of
from apudae.training.recipes import ADVERSARIAL_METHODS, Recipe, overridden, recipe_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    parser.add_argument("--part", choices=PARTS + ("all",), default="all",
                        help="classifier, dae (eq. 5), adversarial (adversarially trained baseline) or all")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs for the chosen part(s)")
    parser.add_argument("--holdout", type=int, default=None, help="training images kept out for calibration")
    parser.add_argument("--dae-sigma-max", type=float, default=None,
                        help="override the recipe's largest DAE training noise std (eq. 5, sigma ~ U[0, sigma_max])")
    parser.add_argument("--dae-dropout", type=float, default=None,
                        help="override the recipe's DAE dropout probability after each convolution (eq. 6's F_enc/F_dec)")
    parser.add_argument("--dae-depth", type=int, default=None, help="override the recipe's DAE depth (N in Table 1)")
    parser.add_argument("--dae-width", type=int, default=None, help="override the recipe's DAE width (feature maps per layer)")
    parser.add_argument("--dae-extra-dataset", choices=DATASETS, default=None,
                        help="also train the DAE on this data set's training images at their own size, one batch "
                             "of as many pixels after each batch (for example cifar10 beside imagenet)")
    parser.add_argument("--adversarial-method", choices=ADVERSARIAL_METHODS, default=None,
                        help="how the adversarial baseline's training images are attacked: pgd (Madry et al. 2018) "
                             "or fgsm-rs (Wong et al. 2020, one FGSM step from a random start; default: the recipe's)")
    parser.add_argument("--adversarial-epsilon", type=attack_budget, default=None,
                        help="l_inf budget in (0, 1] pixel units that the adversarial baseline trains against "
                             "(default: the recipe's; MNIST 0.1, CIFAR-10 8/255)")
    parser.add_argument("--classifier-noise-max", type=float, default=None,
                        help="Gaussian noise on the plain classifier's training images: X + s*N(0,1), s ~ U[0, this]")
    parser.add_argument("--classifier-width", type=int, default=None,
                        help="override the recipe's classifier width (channels of the first stage; ResNet-9: 64 is "
                             "the standard net, the CIFAR-10 recipe's 32 is half of it)")


def attack_budget(text: str) -> float:
    """An l_inf attack budget from the command line: a float in (0, 1]; argparse's error otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give an l_inf budget in (0, 1], e.g. 0.3")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value:g} is outside (0, 1]: budgets are in [0, 1] pixel units, e.g. 0.3")
    return value


def chosen_parts(args: argparse.Namespace) -> tuple[str, ...]:
    """The parts ``--part`` names: all of PARTS for "all", else that one."""
    return PARTS if args.part == "all" else (args.part,)


def recipe_of(args: argparse.Namespace) -> Recipe:
    """The data set's recipe with the command line's overrides (epochs of the chosen part(s) only, holdout,
    DAE sigma_max, dropout, depth, width and extra data set, adversarial method and budget, classifier noise and width)."""
    epochs = {f"{part}_epochs": args.epochs for part in chosen_parts(args)}
    recipe = recipe_for(args.dataset, holdout=args.holdout, classifier_noise_max=args.classifier_noise_max,
                        dae_extra_dataset=args.dae_extra_dataset, adversarial_method=args.adversarial_method,
                        adversarial_epsilon=args.adversarial_epsilon, **epochs)
    classifier = recipe.classifier and overridden(recipe.classifier, width=args.classifier_width)
    return replace(recipe, classifier=classifier,
                   dae=overridden(recipe.dae, sigma_max=args.dae_sigma_max, dropout=args.dae_dropout,
                                  depth=args.dae_depth, width=args.dae_width))


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    recipe = recipe_of(args)
    if recipe.classifier is None and chosen_parts(args) != ("dae",):
        print(f"apudae train: {args.dataset}'s classifier is imported (apudae import-classifier), not trained; "
              "train its DAE with --part dae")
        return 2
    data = load_dataset(args.dataset, "train", args.data_dir, args.download, imported_preprocessing(workdir_of(args)))
    train_index, holdout_index = train_holdout_split(len(data), recipe.holdout)
    train, holdout = data.subset(train_index), data.subset(holdout_index)
    extra = None
    if recipe.dae_extra_dataset is not None and "dae" in chosen_parts(args):
        extra = load_dataset(recipe.dae_extra_dataset, "train", args.data_dir, args.download)
        if extra.images.shape[1] != recipe.dae.in_channels:
            print(f"apudae train: --dae-extra-dataset {recipe.dae_extra_dataset} has {extra.images.shape[1]} "
                  f"channel(s), the DAE of {args.dataset} takes {recipe.dae.in_channels}; choose a data set with "
                  f"{recipe.dae.in_channels}")
            return 2
    for part in chosen_parts(args):
        meta = train_part(part, recipe, train, holdout, workdir_of(args), args.seed, extra if part == "dae" else None)
        print(f"{args.dataset} {part}: {meta['epoch']} epochs, {meta['wall_seconds']:.0f} s, last {meta['history'][-1]}")
    return 0
