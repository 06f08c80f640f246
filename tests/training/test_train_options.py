"""``apudae train``'s command line reaches the recipe it trains with."""
import argparse
from dataclasses import replace

import pytest
import torch

from apudae.models.dae import DAEConfig
from apudae.training.data import ImageSet
from apudae.models.classifiers import ImageClassifier
from apudae.training.loops import _augment, adversarial_batch, extra_batch_size, train_part
from apudae.training.recipes import recipe_for
from apudae.training.train import add_arguments, recipe_of


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


def test_epochs_override_only_the_chosen_part():
    default = recipe_for("cifar10")
    recipe = recipe_of(_parse("--dataset", "cifar10", "--part", "classifier", "--epochs", "30"))
    assert recipe.classifier_epochs == 30
    assert (recipe.dae_epochs, recipe.adversarial_epochs) == (default.dae_epochs, default.adversarial_epochs)


def test_dae_dropout_overrides_only_its_field():
    assert recipe_of(_parse("--dataset", "cifar10")).dae.dropout == 0.0
    recipe = recipe_of(_parse("--dataset", "cifar10", "--dae-dropout", "0.1"))
    assert recipe.dae.dropout == 0.1 and recipe.dae.sigma_max == 0.25 and recipe.dae.depth == 15


def test_classifier_noise_max_overrides_only_its_field():
    assert recipe_of(_parse("--dataset", "cifar10")).classifier_noise_max == 0.0
    recipe = recipe_of(_parse("--dataset", "cifar10", "--classifier-noise-max", "0.1"))
    assert recipe.classifier_noise_max == 0.1 and recipe.dae.sigma_max == 0.25 and recipe.classifier_epochs == 24


def test_classifier_noise_reaches_the_plain_classifier_only_and_stays_in_range():
    recipe = replace(recipe_for("cifar10"), crop_padding=0, flip=False)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    noisy = replace(recipe, classifier_noise_max=0.2)

    def augmented(r, part):
        return _augment(r, part, images, torch.Generator().manual_seed(0))

    assert torch.equal(augmented(recipe, "classifier"), images.float() / 255)
    assert torch.equal(augmented(noisy, "adversarial"), images.float() / 255)
    out = augmented(noisy, "classifier")
    assert out.min() >= 0 and out.max() <= 1
    per_image_change = (out - images.float() / 255).abs().flatten(1).mean(1)
    assert per_image_change.max() > 0.02  # noise drawn per image, up to s = 0.2
    assert per_image_change.std() > 0.005  # with a strength of its own for each image


def test_classifier_width_overrides_only_its_field():
    assert recipe_of(_parse("--dataset", "cifar10")).classifier.width == 32
    recipe = recipe_of(_parse("--dataset", "cifar10", "--classifier-width", "64"))
    assert recipe.classifier.width == 64 and recipe.classifier.arch == "resnet9" and recipe.classifier.flip_average
    assert recipe.classifier.mean == recipe_for("cifar10").classifier.mean and recipe.dae.width == 64


def test_dae_extra_dataset_overrides_only_its_field():
    assert recipe_of(_parse("--dataset", "imagenet")).dae_extra_dataset is None
    recipe = recipe_of(_parse("--dataset", "imagenet", "--part", "dae", "--dae-extra-dataset", "cifar10"))
    assert recipe.dae_extra_dataset == "cifar10" and recipe.dae.width == 48 and recipe.dae_epochs == 16


def test_extra_batches_hold_as_many_pixels_as_a_main_batch():
    photos = torch.zeros(4, 3, 224, 224, dtype=torch.uint8)
    thumbnails = ImageSet(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.zeros(10, dtype=torch.long), ["x"])
    assert extra_batch_size(photos, thumbnails, 16) == 784  # 16 * 224^2 / 32^2
    assert extra_batch_size(torch.zeros(1, 3, 8, 8), thumbnails, 1) == 1  # never an empty batch


def test_a_dae_trains_on_both_data_sets_and_logs_each_loss(tmp_path):
    recipe = replace(recipe_for("imagenet"), dae=DAEConfig(in_channels=3, depth=2, width=4, sigma_max=0.25),
                     dae_epochs=1, dae_batch=2, dae_bf16=False, dae_extra_dataset="cifar10")
    generator = torch.Generator().manual_seed(0)

    def images(n, size):
        return ImageSet(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator),
                        torch.zeros(n, dtype=torch.long), ["x"])

    meta = train_part("dae", recipe, images(4, 16), images(2, 16), tmp_path, seed=0, extra=images(5, 8))
    record = meta["history"][-1]
    assert record["extra_train_loss"] > 0 and record["train_loss"] > 0
    assert meta["recipe"]["dae_extra_dataset"] == "cifar10"


def test_adversarial_method_overrides_only_its_field():
    recipe = recipe_of(_parse("--dataset", "cifar10", "--part", "adversarial", "--adversarial-method", "fgsm-rs"))
    assert recipe.adversarial_method == "fgsm-rs" and recipe.adversarial_steps == recipe_for("cifar10").adversarial_steps
    assert recipe_of(_parse("--dataset", "cifar10")).adversarial_method == recipe_for("cifar10").adversarial_method


def test_adversarial_epsilon_overrides_only_its_field():
    recipe = recipe_of(_parse("--dataset", "mnist", "--part", "adversarial", "--adversarial-epsilon", "0.3"))
    assert recipe.adversarial_epsilon == 0.3 and recipe.adversarial_method == recipe_for("mnist").adversarial_method
    assert recipe_of(_parse("--dataset", "mnist")).adversarial_epsilon == recipe_for("mnist").adversarial_epsilon


@pytest.mark.parametrize("budget, words", [("0", "outside (0, 1]"), ("1.5", "outside (0, 1]"),
                                           ("8/255", "not a number")])
def test_a_bad_adversarial_epsilon_is_refused_with_the_range(budget, words, capsys):
    with pytest.raises(SystemExit):
        _parse("--dataset", "mnist", "--adversarial-epsilon", budget)
    error = capsys.readouterr().err
    assert "--adversarial-epsilon" in error and words in error, error


def _tiny_classifier_recipe(**fields):
    recipe = recipe_for("mnist")
    return replace(recipe, classifier=replace(recipe.classifier, width=4), adversarial_epsilon=0.3, **fields)


def test_fast_adversarial_training_attacks_within_the_ball_with_one_gradient():
    """fgsm-rs: a uniform start in the ball, then one step of 1.25 * eps, projected back to the ball and [0, 1]."""
    recipe = _tiny_classifier_recipe(adversarial_method="fgsm-rs")
    model = ImageClassifier(recipe.classifier)
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % 10
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    adv = adversarial_batch(model, x, y, recipe, torch.Generator().manual_seed(1))
    handle.remove()
    assert len(calls) == 1  # one forward (and backward) pass: the "fast" of fast adversarial training
    assert (adv - x).abs().max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > 0.29  # a step of 1.25 * eps from inside the ball reaches its edge


def test_an_adversarial_epoch_logs_its_robust_accuracy(tmp_path):
    recipe = _tiny_classifier_recipe(adversarial_method="fgsm-rs", adversarial_epochs=1, classifier_batch=4)
    generator = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=generator),
                    torch.arange(8) % 10, [str(i) for i in range(10)])
    record = train_part("adversarial", recipe, data, data, tmp_path, seed=0)["history"][-1]
    assert 0 <= record["val_pgd_accuracy"] <= record["val_accuracy"] + 1e-9
    assert (tmp_path / "adversarial.safetensors").exists()
