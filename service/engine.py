"""The served models: one :class:`ModelRuntime` per bundle, and loading them all from the model directory.

A runtime owns the bundle's DAE on the service's device and an onnxruntime session of its
``classifier.onnx`` (CUDA provider on a GPU, CPU otherwise). Its three batch functions —
:meth:`~ModelRuntime.purify`, :meth:`~ModelRuntime.classify`, :meth:`~ModelRuntime.score` — take
(B, C, H, W) float32 images in [0, 1] and return B per-image results; the batcher calls them
in its worker thread.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from apudae.models.bundle import Bundle, BundleError, load_bundle
from apudae.models.cpu import cpu_has_amx_bf16
from apudae.models.cuda import make_cuda_reproducible
from apudae.models.dae import reconstruction_error
from apudae.models.purification import PurifySettings, purify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """Reconstruction error (eq. 7) of an input, its z-score and one-sided p-value under the calibration."""

    error: float
    z_score: float
    p_value: float


@dataclass(frozen=True)
class Purified:
    """One purified image: ``pixels`` (C, H, W) in [0, 1] on the CPU, errors before/after, steps taken."""

    pixels: torch.Tensor
    before: Scored
    error_after: float
    steps: int


@dataclass(frozen=True)
class Classified:
    """Class probabilities of one image and, when it was purified first, its purification; ``scored``: the
    input's error as the detector reads it (``purified.before`` when purified; one DAE pass otherwise, made
    only for a bundle with detector thresholds; else None)."""

    probabilities: list[float]
    purified: Purified | None
    scored: Scored | None = None


def onnx_session_options() -> ort.SessionOptions:
    """onnxruntime on the same cores as torch: as many intra-op threads as torch uses, and no spin-waiting
    after a run (the default), whose busy threads would take the cores from the next purification."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def onnx_providers(device: torch.device) -> list:
    """CUDA provider on the service's GPU when onnxruntime has it, else CPU."""
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def resolve_precision(precision: str, device: torch.device) -> str:
    """The purification precision to run: "fp32" or "bf16" as asked; "auto" picks bf16 on a CPU with AMX-BF16
    and fp32 elsewhere (CPUs with AVX512-BF16 only, and GPUs). The measurements behind the choice are in
    docs/PERFORMANCE.md ("Precision")."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and cpu_has_amx_bf16() else "fp32"


class ModelRuntime:
    """A loaded bundle ready to serve on ``device``.

    precision "bf16" runs the purification loop under ``torch.autocast(bfloat16)`` (weights stay fp32);
    "fp32" runs it in full precision; "auto" picks one (``resolve_precision``). /score always runs in fp32.
    The DAE is channels_last for bf16 and on CPU, where oneDNN's convolutions prefer it (measured in
    docs/PERFORMANCE.md, "Precision"); CUDA fp32 keeps NCHW.
    """

    def __init__(self, bundle: Bundle, device: torch.device, precision: str = "auto"):
        precision = resolve_precision(precision, device)
        self.bundle, self.device, self.precision = bundle, device, precision
        self.name = bundle.name
        make_cuda_reproducible(device)
        layout = torch.channels_last if precision == "bf16" or device.type == "cpu" else torch.contiguous_format
        self.dae = bundle.dae.to(device, memory_format=layout)
        self.calibration = bundle.calibration
        self.detector = bundle.calibration.detector  # None: a bundle calibrated before the detector; no flags
        self.session = ort.InferenceSession(str(bundle.onnx_path), onnx_session_options(),
                                            providers=onnx_providers(device))
        self.input_name = self.session.get_inputs()[0].name

    def autocast(self) -> torch.autocast:
        """The context the purification loop runs in: bf16 autocast for precision "bf16", else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def default_settings(self, budget: float | None = None, **overrides) -> PurifySettings:
        """The bundle's purification settings for attack budget ``budget`` (None: its defaults) with
        ``overrides`` (None values ignored); ValueError for a budget the bundle lacks or a bad override."""
        return PurifySettings.from_defaults(self.bundle.purification_for(budget), **overrides)

    def _scored(self, errors: torch.Tensor) -> list[Scored]:
        errors = errors.detach().double().cpu()
        z, p = self.calibration.z_score(errors), self.calibration.p_value(errors)
        return [Scored(*values) for values in zip(errors.tolist(), z.tolist(), p.tolist())]

    def score(self, images: torch.Tensor) -> list[Scored]:
        """One DAE pass, no purification loop: the cheap detector."""
        with torch.inference_mode():
            return self._scored(reconstruction_error(self.dae, images.to(self.device)))

    def purify(self, images: torch.Tensor, settings: PurifySettings) -> list[Purified]:
        """Purify with ``settings``; each result holds its image and its errors before and after."""
        with self.autocast():
            result = purify(self.dae, images, self.calibration, settings)
        pixels = result.images.detach().float().cpu()
        return [Purified(pixels[i], before, after, steps) for i, (before, after, steps) in enumerate(
            zip(self._scored(result.error_before), result.error_after.tolist(), result.steps.tolist()))]

    def classify(self, images: torch.Tensor, settings: PurifySettings | None) -> list[Classified]:
        """Class probabilities, after purifying with ``settings`` unless it is None."""
        purified = self.purify(images, settings) if settings is not None else None
        if purified is not None:
            scored = [p.before for p in purified]
            images = torch.stack([p.pixels for p in purified])
        else:
            scored = self.score(images) if self.detector is not None else [None] * len(images)
        logits = self.session.run(None, {self.input_name: images.float().cpu().numpy()})[0]
        logits = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return [Classified(row.tolist(), purified[i] if purified else None, scored[i])
                for i, row in enumerate(probabilities)]

    def warm_up(self) -> None:
        """Run every operation once on a small batch so the first request pays no start-up cost."""
        images = torch.full((2, *self.bundle.input_shape), 0.5)
        self.score(images)
        self.classify(images, self.default_settings())


def load_models(model_dir: Path, device: torch.device, precision: str = "auto") -> dict[str, ModelRuntime]:
    """Load and warm up every bundle under ``model_dir``; a bundle that fails is logged and left out."""
    runtimes: dict[str, ModelRuntime] = {}
    for path in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        if not (path / "bundle.json").is_file():
            continue
        try:
            runtime = ModelRuntime(load_bundle(path), device, precision)
            runtime.warm_up()
        except BundleError as err:
            log.error("model %s left out: %s", path.name, err)
            continue
        except Exception as err:  # a broken bundle (bad JSON fields, bad ONNX...) must not stop the others
            log.error("model %s left out: it could not be built (%s: %s)", path.name, type(err).__name__, err)
            continue
        if runtime.name in runtimes:
            log.error("model %s left out: its name %r is already served from another directory", path, runtime.name)
            continue
        runtimes[runtime.name] = runtime
        log.info("model %s loaded from %s and warmed up on %s (%s)", runtime.name, path, device, runtime.precision)
    return runtimes
