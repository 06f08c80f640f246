"""Shared fixtures: tiny bundles made on the spot (nothing trained, nothing downloaded)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from apudae.models.calibration import Calibration
from apudae.models.classifiers import ClassifierConfig, ImageClassifier
from apudae.models.dae import DAEConfig, DenoisingAutoEncoder, reconstruction_error

# Tests use tiny models: one thread each avoids oversubscribing the cores with the
# servers and workers some tests start beside them.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
TINY_SHAPE = (1, 28, 28)


def load_shipped(name: str, data_dir: Path):
    """A shipped bundle ``models/<name>`` (weights on the CPU) and its data set's test split (an ImageSet)."""
    from apudae.models.bundle import load_bundle
    from apudae.training.data import load_dataset

    from apudae.training.data import DataNotFoundError

    bundle = load_bundle(REPO / "models" / name)
    try:
        return bundle, load_dataset(bundle.meta["provenance"]["dataset"], "test", data_dir)
    except DataNotFoundError as missing:
        pytest.skip(f"{name}'s data set is not in {data_dir}: {missing}")


def make_tiny_nets(seed: int = 0) -> tuple[DenoisingAutoEncoder, ImageClassifier]:
    """An untrained tiny DAE (N=2, width 8) and classifier (width 4) for 1x28x28 images, eval mode."""
    torch.manual_seed(seed)
    dae = DenoisingAutoEncoder(DAEConfig(in_channels=1, depth=2, width=8, sigma_max=0.3)).eval()
    classifier = ImageClassifier(ClassifierConfig("mnist_cnn", 1, 10, 4, (0.5,), (0.5,))).eval()
    return dae, classifier


def _random_calibration(dae: DenoisingAutoEncoder, shape: tuple[int, int, int], count: int, data: str,
                        dataset: str) -> tuple[Calibration, dict]:
    """A calibration of ``dae`` on ``count`` seeded random images of ``shape`` and the provenance that says so."""
    from apudae.training.provenance import machine_description

    images = torch.rand(count, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        calibration = Calibration.from_errors(reconstruction_error(dae, images))
    provenance = {"data": data, "dataset": dataset, "image_size": list(shape[1:]),
                  "splits": {"train": 0, "holdout_calibration": count, "test": 0}, "epochs": {}, "wall_seconds": {},
                  "seed": 0, "git_commit": "test", "machine": machine_description()}
    return calibration, provenance


def write_tiny_bundle(out: Path, name: str = "tiny", adversarial_classifier: ImageClassifier | None = None) -> dict:
    """Write a valid bundle of tiny untrained nets to ``out`` (with ``adversarial_classifier`` as its
    adversarially trained baseline, when given); returns its bundle.json."""
    from apudae.models.bundle import write_bundle

    dae, classifier = make_tiny_nets()
    calibration, provenance = _random_calibration(dae, TINY_SHAPE, 64, "random test images", "tiny")
    purification = {"variant": "F", "n": 3, "alpha": 0.01, "beta": 0.9, "gamma": 0.05}
    return write_bundle(out, name, dae, classifier, calibration, [f"class {i}" for i in range(10)],
                        purification, provenance, {"clean_test_accuracy": 0.1},
                        adversarial_classifier=adversarial_classifier)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A models directory holding one valid tiny bundle, ``<dir>/tiny``. Treat it as read-only."""
    models_dir = tmp_path_factory.mktemp("models")
    write_tiny_bundle(models_dir / "tiny")
    return models_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data sets (APUDAE_DATA_DIR, else ../shared/data beside the repo); tests skip without them."""
    path = Path(os.environ.get("APUDAE_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data sets not found at {path}: set APUDAE_DATA_DIR to run this test")
    return path


PHOTO_SHAPE = (3, 32, 32)
PHOTO_PREPROCESSING = {"resize": 36, "crop": 32, "interpolation": "bicubic"}


def make_tiny_photo_classifier(seed: int = 0) -> torch.nn.Module:
    """An untrained 12-class colour classifier for 3x32x32 images that expects input normalised by 0.5/0.5,
    as a user's own model would (eval mode)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 12)).eval()


def import_tiny_photo_classifier(workdir: Path) -> dict:
    """Export the tiny photo classifier to ONNX and import it with `apudae import-classifier` into ``workdir``
    (12 classes, normalisation wrapped, preprocessing PHOTO_PREPROCESSING); returns the import record."""
    import argparse

    from apudae.models.bundle import export_onnx
    from apudae.training.import_classifier import add_arguments, import_classifier

    workdir.mkdir(parents=True, exist_ok=True)
    export_onnx(make_tiny_photo_classifier(), PHOTO_SHAPE, workdir / "user.onnx")
    (workdir / "classes.txt").write_text("\n".join(f"photo class {i}" for i in range(12)))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--onnx", str(workdir / "user.onnx"), "--classes", str(workdir / "classes.txt"),
                              "--input-size", "32", "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5",
                              "--resize", "36", "--workdir", str(workdir)])
    return import_classifier(args)


def write_tiny_photo_bundle(out: Path, workdir: Path, name: str = "photo") -> dict:
    """A bundle of a tiny untrained colour DAE and the imported tiny photo classifier; returns its bundle.json."""
    from apudae.models.bundle import write_bundle
    from apudae.models.onnx_classifier import differentiable_copy

    imported = import_tiny_photo_classifier(workdir)
    torch.manual_seed(0)
    dae = DenoisingAutoEncoder(DAEConfig(in_channels=3, depth=2, width=8, sigma_max=0.25)).eval()
    calibration, provenance = _random_calibration(dae, PHOTO_SHAPE, 32, "random test photos", "tiny-photo")
    purification = {"variant": "F", "n": 2, "alpha": 0.01, "beta": 0.9, "gamma": 0.05}
    classifier = differentiable_copy(workdir / "classifier.onnx", PHOTO_SHAPE)
    return write_bundle(out, name, dae, classifier, calibration, imported["classes"], purification, provenance,
                        {"clean_test_accuracy": 0.1}, imported=imported, imported_onnx=workdir / "classifier.onnx")


@pytest.fixture(scope="session")
def photo_models_dir(tmp_path_factory) -> Path:
    """A models directory holding the tiny photo bundle, ``<dir>/photo`` (imported ONNX classifier, 12 classes,
    declared preprocessing). Treat it as read-only."""
    models_dir = tmp_path_factory.mktemp("photo-models")
    write_tiny_photo_bundle(models_dir / "photo", tmp_path_factory.mktemp("photo-import"))
    return models_dir
