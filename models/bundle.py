"""The model bundle: one directory per model holding everything the service needs.

Layout of ``models/<name>/``:
- ``dae.safetensors``, ``classifier.safetensors`` (and ``adversarial_classifier.safetensors``
  for the adversarial-training baseline, when trained): weights, never pickle;
- ``classifier.onnx``: the classifier, float32 NCHW in [0, 1] -> logits;
- ``bundle.json``: shapes, classes, calibration, configs (``adversarial_classifier`` has its own where
  its architecture differs from the classifier's; bundles without one share the classifier's),
  purification defaults, provenance, test metrics and the SHA-256 of every weight file;
- ``README.md``: the model card.

``load_bundle`` checks every hash before it builds anything.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.calibration import Calibration
from models.classifiers import ClassifierConfig, ImageClassifier
from models.dae import DAEConfig, DenoisingAutoEncoder

BUNDLE_FILE = "bundle.json"


class BundleError(RuntimeError):
    """A bundle is missing, incomplete or does not match its recorded hashes."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Bundle:
    """A loaded bundle. Networks are in eval mode with ``requires_grad=False`` on their weights."""

    name: str
    path: Path
    meta: dict
    dae: DenoisingAutoEncoder
    classifier: ImageClassifier
    calibration: Calibration
    adversarial_classifier: ImageClassifier | None = None
    classes: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["input_shape"])

    @property
    def onnx_path(self) -> Path:
        return self.path / "classifier.onnx"

    @property
    def purification_defaults(self) -> dict:
        return dict(self.meta["purification"])


def verify_hashes(path: Path, meta: dict) -> None:
    """Raise BundleError unless every file in meta["files"] exists and has its recorded SHA-256."""
    files = meta.get("files")
    if not files:
        raise BundleError(f"{path / BUNDLE_FILE} lists no weight files and hashes; rebuild the bundle")
    for name, expected in files.items():
        file = path / name
        if Path(name).name != name:
            raise BundleError(f"{path / BUNDLE_FILE} names a file outside the bundle: {name!r}")
        if not file.is_file():
            raise BundleError(f"bundle {path.name}: {name} is missing; restore it or rebuild the bundle")
        actual = sha256_file(file)
        if actual != expected:
            raise BundleError(
                f"bundle {path.name}: {name} has SHA-256 {actual[:12]}…, bundle.json records {expected[:12]}…; "
                "the file was changed or corrupted — restore it or rebuild the bundle")


def _frozen(model: torch.nn.Module, weights: Path) -> torch.nn.Module:
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_bundle(path: str | Path) -> Bundle:
    """Load and verify the bundle in directory ``path``; raises BundleError with what to fix."""
    path = Path(path)
    meta_file = path / BUNDLE_FILE
    if not meta_file.is_file():
        raise BundleError(f"no {BUNDLE_FILE} in {path}: not a bundle (build one with `apudae bundle`)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"{meta_file} is not valid JSON: {err}") from err
    verify_hashes(path, meta)
    dae = _frozen(DenoisingAutoEncoder(DAEConfig(**meta["dae"])), path / "dae.safetensors")
    classifier_config = ClassifierConfig.from_dict(meta["classifier"])
    classifier = _frozen(ImageClassifier(classifier_config), path / "classifier.safetensors")
    adversarial = None
    if "adversarial_classifier.safetensors" in meta["files"]:
        adversarial_config = ClassifierConfig.from_dict(meta.get("adversarial_classifier", meta["classifier"]))
        adversarial = _frozen(ImageClassifier(adversarial_config), path / "adversarial_classifier.safetensors")
    return Bundle(name=meta["name"], path=path, meta=meta, dae=dae, classifier=classifier,
                  calibration=Calibration.from_dict(meta["calibration"]),
                  adversarial_classifier=adversarial, classes=list(meta["classes"]))
