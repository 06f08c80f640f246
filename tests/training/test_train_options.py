"""``apudae train``'s command line reaches the recipe it trains with."""
import argparse

from training.train import add_arguments, recipe_of


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_without_overrides_the_recipe_is_the_data_sets_own():
    recipe = recipe_of(_parse("--dataset", "cifar10"))
    assert recipe.dae.sigma_max == 0.25 and recipe.dae_epochs == 6 and recipe.holdout == 5000


def test_dae_sigma_max_and_epochs_override_only_their_fields():
    recipe = recipe_of(_parse("--dataset", "cifar10", "--dae-sigma-max", "0.4", "--epochs", "8"))
    assert recipe.dae.sigma_max == 0.4 and recipe.dae.depth == 15 and recipe.dae.in_channels == 3
    assert recipe.dae_epochs == 8 and recipe.classifier.arch == "resnet9"
