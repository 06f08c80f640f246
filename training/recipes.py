"""Default training recipes per data set, sized for a 2-core CPU.

A recipe fixes the architectures (Table 1 for the DAE) and the optimisation
settings; command-line options override single fields.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from apudae.models.classifiers import ClassifierConfig
from apudae.models.dae import DAEConfig


#: the attacks ``Recipe.adversarial_method`` may name
ADVERSARIAL_METHODS = ("pgd", "fgsm-rs")


@dataclass(frozen=True)
class Recipe:
    """``classifier`` is None for a data set whose classifier is imported (``apudae import-classifier``), not trained."""

    dataset: str
    classifier: ClassifierConfig | None
    dae: DAEConfig
    holdout: int = 5000  # images of the training split kept out for calibration and tuning
    classifier_epochs: int = 4
    classifier_batch: int = 128
    classifier_lr: float = 0.05  # peak of the one-cycle schedule (SGD, Nesterov momentum 0.9)
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    crop_padding: int = 2
    flip: bool = False
    # Gaussian noise added to the plain classifier's training images, as eq. 5 adds it to the DAE's:
    # X + s * N(0, 1), s ~ U[0, classifier_noise_max] per image, clipped to [0, 1]; 0 = none
    classifier_noise_max: float = 0.0
    # torch.autocast(bfloat16) when training the classifiers / the DAE (weights stay fp32), on CPUs with bf16 in
    # hardware only (models.cpu.cpu_computes_bf16); each epoch's log line says which it ran
    bf16: bool = False
    dae_bf16: bool = False
    dae_epochs: int = 3
    dae_batch: int = 128
    dae_lr: float = 2e-3  # Adam, cosine decay
    # a second data set (same channels) whose training images the DAE also learns from, at their own size: after
    # each batch of the recipe's data, one batch of it holding as many pixels (cifar10 beside a photo DAE:
    # 16 photos at 224 -> 784 images at 32); None = the recipe's data only
    dae_extra_dataset: str | None = None
    adversarial_epsilon: float = 0.1  # l_inf budget of the adversarially trained baseline
    # how its training images are attacked (ADVERSARIAL_METHODS): "pgd" (Madry et al. 2018), adversarial_steps
    # steps of 2.5 * eps / steps from a uniform start in the ball; "fgsm-rs" (Wong et al. 2020, "fast
    # adversarial training"), one FGSM step of 1.25 * eps from a uniform start in the ball
    adversarial_method: str = "pgd"
    adversarial_steps: int = 5
    adversarial_epochs: int = 2
    # variant F defaults written into bundle.json: the paper's n and beta; on MNIST the paper's alpha and gamma
    # tuned on the training holdout, carry=False (no difference measured there, and cheaper); Fashion-MNIST
    # reuses MNIST's; CIFAR-10's alpha, gamma and carry tuned on its holdout (docs/RESULTS.md, "Tuning")
    purification: dict = field(default_factory=dict)
    # attack budget (l_inf epsilon) -> overrides of ``purification`` tuned for it on the training holdout, written
    # into bundle.json as "purification_budgets" (a request's budget=epsilon takes them); empty = one setting
    purification_budgets: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classifier"] = self.classifier.to_dict() if self.classifier else None
        d["dae"] = self.dae.to_dict()
        return d


RECIPES: dict[str, Recipe] = {
    "mnist": Recipe(
        dataset="mnist",
        classifier=ClassifierConfig("mnist_cnn", 1, 10, 32, (0.1307,), (0.3081,)),
        dae=DAEConfig(in_channels=1, depth=5, sigma_max=0.3),
        classifier_epochs=3,
        adversarial_epochs=1,
        purification={"variant": "F", "n": 15, "alpha": 0.01, "beta": 0.9, "gamma": 0.15, "step": "sign",
                      "carry": False},
        # eps = 0.3: 15 steps of 0.01 cannot move a pixel by 0.3; n = 45 tuned on the holdout (docs/EXPERIMENTS.md)
        purification_budgets={0.3: {"n": 45}},
    ),
    "fashion-mnist": Recipe(
        dataset="fashion-mnist",
        classifier=ClassifierConfig("mnist_cnn", 1, 10, 32, (0.2860,), (0.3530,)),
        dae=DAEConfig(in_channels=1, depth=5, sigma_max=0.3),
        classifier_epochs=5,
        flip=True,
        label_smoothing=0.1,
        purification={"variant": "F", "n": 15, "alpha": 0.01, "beta": 0.9, "gamma": 0.15, "step": "sign",
                      "carry": False},
    ),
    "cifar10": Recipe(
        dataset="cifar10",
        classifier=ClassifierConfig("resnet9", 3, 10, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                                    flip_average=True),
        # the shipped DAE: 2 epochs at sigma_max 0.1, then 4 more at 0.25 (`apudae unbundle`, then `apudae train
        # --part dae --epochs 6 --dae-sigma-max 0.25`); it beat the 2-epoch DAE and 0.4 on the holdout (docs/RESULTS.md)
        dae=DAEConfig(in_channels=3, depth=15, sigma_max=0.25),
        # 24 epochs (clean test accuracy 0.901) beat the 11 before (0.884) behind F on the holdout (docs/RESULTS.md)
        classifier_epochs=24,
        classifier_batch=256,
        classifier_lr=0.2,
        label_smoothing=0.2,
        crop_padding=4,
        flip=True,
        bf16=True,
        dae_epochs=6,
        dae_bf16=True,
        adversarial_epsilon=8 / 255,
        # fast adversarial training, 15 epochs as Wong et al. 2020 (clean test 0.740, PGD-10 holdout 0.448); it
        # replaced 4 epochs of PGD-2 (clean 0.576) in the bundle (docs/RESULTS.md, "a fast adversarially trained baseline")
        adversarial_method="fgsm-rs",
        adversarial_epochs=15,
        purification={"variant": "F", "n": 15, "alpha": 4 / 255, "beta": 0.9, "gamma": 0.075, "step": "sign",
                      "carry": True},
    ),
    "imagenet": Recipe(
        dataset="imagenet",
        classifier=None,  # EfficientNet-Lite0, imported (docs/BRING_YOUR_OWN_MODEL.md)
        # the 224x224 DAE: Table 1's layers at a depth and width that fit 15 steps in 1.5 s on 2 cores,
        # chosen between candidates on the training holdout (docs/RESULTS-imagenet.md)
        dae=DAEConfig(in_channels=3, depth=5, width=48, sigma_max=0.25),
        holdout=100,
        dae_epochs=16,
        dae_batch=16,
        dae_bf16=True,
        # alpha 1/255 kept clean holdout accuracy at 0.83 where CIFAR-10's 4/255 gave 0.74 (docs/RESULTS-imagenet.md)
        purification={"variant": "F", "n": 15, "alpha": 1 / 255, "beta": 0.9, "gamma": 0.075, "step": "sign",
                      "carry": True},
    ),
}


def recipe_for(dataset: str, **overrides) -> Recipe:
    """The recipe of ``dataset`` with ``overrides`` (None values ignored). A user's ``imagefolder:<path>`` data set
    gets the photo recipe of ``imagenet``: its DAE for an imported classifier."""
    if dataset.startswith("imagefolder:"):
        return overridden(replace(RECIPES["imagenet"], dataset=dataset), **overrides)
    if dataset not in RECIPES:
        raise ValueError(f"no recipe for {dataset!r}; choose one of {', '.join(RECIPES)}")
    return overridden(RECIPES[dataset], **overrides)


def overridden(config, **fields):
    """``config`` (a frozen dataclass: a recipe or a model config) with the ``fields`` that are not None replaced."""
    return replace(config, **{k: v for k, v in fields.items() if v is not None})
