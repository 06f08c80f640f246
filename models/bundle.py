"""The model bundle: one directory per model holding everything the service needs.

Layout of ``models/<name>/``:
- ``dae.safetensors``, ``classifier.safetensors`` (and ``adversarial_classifier.safetensors``
  for the adversarial-training baseline, when trained): weights, never pickle; an imported classifier
  (``"classifier": {"format": "onnx", ...}``) has no safetensors file: its ONNX graph holds its weights;
- ``classifier.onnx``: the classifier, float32 NCHW in [0, 1] -> logits (models/onnx_classifier.py);
- ``"preprocessing"`` in bundle.json (optional): how an upload of any size becomes the input
  (models/preprocessing.py);
- ``bundle.json``: shapes, classes, calibration, configs (``adversarial_classifier`` has its own where
  its architecture differs from the classifier's; bundles without one share the classifier's),
  purification defaults, provenance, test metrics and the SHA-256 of every weight file;
- ``"purification_budgets"`` in bundle.json (optional): settings tuned for further attack budgets, each
  ``{"<epsilon>": {<overrides of "purification">}}`` (MNIST: ``{"0.3": {"n": 45}}``); a request chooses
  one by its ε (``budget=0.3``), the defaults serve every other request;
- ``README.md``: the model card.

``write_bundle`` writes one (the ONNX export checked against PyTorch); ``load_bundle`` checks every hash
before it builds anything.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file, save_file

from apudae.models.calibration import Calibration
from apudae.models.classifiers import ClassifierConfig, ImageClassifier
from apudae.models.dae import DAEConfig, DenoisingAutoEncoder
from apudae.models.model_card import model_card
from apudae.models.onnx_classifier import OnnxClassifierError, differentiable_copy
from apudae.models.preprocessing import Preprocessing
from apudae.models.purification.settings import PurifySettings

BUNDLE_FILE = "bundle.json"
ONNX_TOLERANCE = 1e-4  # max |delta logit| between the exported ONNX classifier and PyTorch


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
    """A loaded bundle. Networks are in eval mode with ``requires_grad=False`` on their weights.

    ``classifier`` is the torch classifier; for an imported (ONNX-only) classifier it is the differentiable
    copy, built from classifier.onnx on first use, since serving runs the ONNX file itself."""

    name: str
    path: Path
    meta: dict
    dae: DenoisingAutoEncoder
    load_classifier: Callable[[], torch.nn.Module]
    calibration: Calibration
    adversarial_classifier: ImageClassifier | None = None
    classes: list[str] = field(default_factory=list)

    @cached_property
    def classifier(self) -> torch.nn.Module:
        """(B, C, H, W) in [0, 1] -> (B, num_classes) logits."""
        return self.load_classifier()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["input_shape"])

    @property
    def onnx_path(self) -> Path:
        return self.path / "classifier.onnx"

    @property
    def purification_defaults(self) -> dict:
        return dict(self.meta["purification"])

    @property
    def purification_budgets(self) -> dict[float, dict]:
        """ε -> the overrides of ``purification_defaults`` tuned for that attack budget (empty: none shipped)."""
        return {float(eps): dict(overrides) for eps, overrides in self.meta.get("purification_budgets", {}).items()}

    @property
    def purification_budgets_by_name(self) -> dict[str, dict]:
        """``purification_budgets`` keyed by ε as bundle.json and /models spell it (``budget_name``)."""
        return {budget_name(eps): overrides for eps, overrides in self.purification_budgets.items()}

    def purification_for(self, budget: float | None) -> dict:
        """The purification settings for attack budget ``budget`` (ε, l_inf): the defaults with that budget's
        overrides; None = the defaults. ValueError naming the shipped budgets for one the bundle lacks."""
        if budget is None:
            return self.purification_defaults
        budgets = self.purification_budgets
        for eps, overrides in budgets.items():
            if abs(eps - budget) < 1e-9:
                return {**self.purification_defaults, **overrides}
        shipped = ", ".join(f"{eps:g}" for eps in sorted(budgets)) or "none"
        raise ValueError(f"budget {budget:g} has no tuned settings in bundle {self.name!r} (shipped budgets: "
                         f"{shipped}); leave budget out for the defaults")

    @property
    def preprocessing(self) -> Preprocessing | None:
        """How an upload of any size becomes the input; None: only uploads of the input size are taken."""
        return Preprocessing.from_dict(self.meta.get("preprocessing"))


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
    if meta["classifier"].get("format") == "onnx":  # imported: the ONNX graph is the only copy of its weights
        def classifier() -> torch.nn.Module:
            try:
                return differentiable_copy(path / "classifier.onnx", tuple(meta["input_shape"]))
            except OnnxClassifierError as err:
                raise BundleError(f"bundle {path.name}: {err}") from None
    else:
        loaded = _frozen(ImageClassifier(ClassifierConfig.from_dict(meta["classifier"])),
                         path / "classifier.safetensors")

        def classifier() -> torch.nn.Module:
            return loaded
    adversarial = None
    if "adversarial_classifier.safetensors" in meta["files"]:
        adversarial_config = ClassifierConfig.from_dict(meta.get("adversarial_classifier", meta["classifier"]))
        adversarial = _frozen(ImageClassifier(adversarial_config), path / "adversarial_classifier.safetensors")
    bundle = Bundle(name=meta["name"], path=path, meta=meta, dae=dae, load_classifier=classifier,
                    calibration=Calibration.from_dict(meta["calibration"]),
                    adversarial_classifier=adversarial, classes=list(meta["classes"]))
    for budget in bundle.purification_budgets:  # a bad entry fails here, not in the request that names it
        try:
            PurifySettings.from_defaults(bundle.purification_for(budget))
        except (TypeError, ValueError) as err:
            raise BundleError(f"bundle {path.name}: purification_budgets {budget:g}: {err}") from None
    return bundle


def export_onnx(classifier: torch.nn.Module, input_shape: tuple[int, ...], path: Path) -> float:
    """Export ``classifier`` (eval) to ONNX with a dynamic batch axis; returns max |delta logit| vs PyTorch.

    Raises ValueError when the exported model differs from PyTorch by more than ONNX_TOLERANCE.
    """
    example = torch.rand(4, *input_shape, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=65536)
    torch.onnx.export(classifier, (example,), str(path), dynamo=True, input_names=["image"],
                      output_names=["logits"], dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probe = torch.rand(7, *input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = classifier(probe).numpy()
    delta = float(np.abs(session.run(None, {"image": probe.numpy()})[0] - expected).max())
    if delta > ONNX_TOLERANCE:
        raise ValueError(f"ONNX export differs from PyTorch by {delta:.2e} > {ONNX_TOLERANCE:g}")
    return delta


def budget_name(epsilon: float) -> str:
    """An attack budget ε as a bundle.json key: the shortest float spelling ("0.3")."""
    return f"{float(epsilon):g}"


def write_bundle(out: Path, name: str, dae: torch.nn.Module, classifier: torch.nn.Module, calibration: Calibration,
                 classes: list[str], purification: dict, provenance: dict, metrics: dict,
                 adversarial_classifier: torch.nn.Module | None = None, card: str = "",
                 imported: dict | None = None, imported_onnx: Path | None = None,
                 purification_budgets: dict | None = None) -> dict:
    """Write the bundle directory ``out`` and return its bundle.json contents.

    A trained ``classifier`` is saved as safetensors and exported to ONNX. An imported one
    (``imported``: the record of ``apudae import-classifier``, ``imported_onnx``: its checked ONNX file)
    is copied as it is; ``classifier`` is then its differentiable copy, and the record's preprocessing
    becomes the bundle's. ``purification_budgets``: ε -> overrides of ``purification`` (see the layout)."""
    out.mkdir(parents=True, exist_ok=True)
    input_shape = [dae.config.in_channels, *provenance["image_size"]]
    weights = {"dae.safetensors": dae}
    if imported is None:
        weights["classifier.safetensors"] = classifier
    if adversarial_classifier is not None:
        weights["adversarial_classifier.safetensors"] = adversarial_classifier
    for file, model in weights.items():
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / file))
    if imported is None:
        onnx_delta = export_onnx(classifier.eval(), tuple(input_shape), out / "classifier.onnx")
        classifier_meta = classifier.config.to_dict()
    else:
        (out / "classifier.onnx").write_bytes(imported_onnx.read_bytes())
        onnx_delta = imported["differentiable_copy_max_abs_logit_delta"]
        classifier_meta = {"format": "onnx", "num_classes": len(classes), "source": imported["source"],
                           "normalisation": imported["normalisation"]}
    files = sorted([*weights, "classifier.onnx"])
    meta = {
        "name": name, "format_version": 1, "input_shape": input_shape, "classes": classes,
        **({"preprocessing": imported["preprocessing"]} if imported and imported["preprocessing"] else {}),
        "calibration": calibration.to_dict(), "dae": dae.config.to_dict(), "classifier": classifier_meta,
        **({"adversarial_classifier": adversarial_classifier.config.to_dict()}
           if adversarial_classifier is not None and adversarial_classifier.config != classifier.config else {}),
        "purification": purification,
        **({"purification_budgets": {budget_name(eps): overrides for eps, overrides in purification_budgets.items()}}
           if purification_budgets else {}),
        "provenance": provenance,
        "metrics": {**metrics, "onnx_max_abs_logit_delta": onnx_delta},
        "files": {f: sha256_file(out / f) for f in files},
    }
    (out / BUNDLE_FILE).write_text(json.dumps(meta, indent=1))
    (out / "README.md").write_text(card or model_card(meta))
    return meta
