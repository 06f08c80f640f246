"""The models each bundle serves over the Open Inference Protocol (v2), their tensors and metadata.

Bundle ``b`` is served as two models: ``b`` answers what ``POST /classify`` does (operation "classify",
purified first unless ``purify`` is false) and ``b-purify`` what ``POST /purify`` does (operation "purify").
A bundle whose own name is ``b-purify`` keeps that name for its classify model.

Input ``images``: B images as UINT8 in [0, 255] or FP32 in [0, 1], shape [B, C, H, W] or [B, H, W, C]
with (C, H, W) the bundle's input shape, 1 <= B <= the service's max images per request.

Outputs, one row per image:

- ``probabilities`` FP32 [B, K]: softmax of the classifier's logits (K classes);
- ``class_index`` INT64 [B] and ``label`` BYTES [B]: the most probable class (ties: the lower index);
- ``error_before``, ``error_after`` FP64 [B]: reconstruction error (eq. 7) before and after purification;
- ``z_score``, ``p_value`` FP64 [B]: of ``error_before`` under the bundle's calibration;
- ``steps`` INT32 [B]: purification steps taken;
- ``purified`` (``b-purify`` only): the purified images in the input's datatype and layout (UINT8 rounded);
- ``flagged`` BOOL [B] (bundles with detector thresholds only): the detector's flag at the request's ``fpr``.

The classify model without purification (``purify`` false) has the first three and ``flagged`` only.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from apudae.service.api.v2_schemas import ClassifyParameters, PurifyParameters
from apudae.service.api.v2_tensors import TensorError
from apudae.service.engine import ModelRuntime, Purified, Scored
from apudae.service.imaging import to_uint8

PURIFY_SUFFIX = "-purify"
INPUT = "images"
DATATYPES = ("UINT8", "FP32")
PLATFORM = "apudae"


@dataclass(frozen=True)
class Images:
    """A request's images: ``pixels`` (B, C, H, W) float32 in [0, 1], and the datatype and layout ("NCHW" or
    "NHWC") they came in, which ``purified`` is answered in."""

    pixels: torch.Tensor
    datatype: str
    layout: str


@dataclass(frozen=True)
class Batch:
    """What a request's outputs are computed from: the batch function's ``results`` for its images (one
    ``Classified`` or ``Purified`` each), the request's ``images``, the bundle's runtime and the detector's
    ``flags`` (None: the bundle has no detector thresholds)."""

    results: list
    images: Images
    runtime: ModelRuntime
    flags: list[bool] | None


Extract = Callable[[Batch], "np.ndarray | list[str]"]


def input_scores(results: list) -> list[Scored]:
    """The input's error of each result, as the detector reads it."""
    return [r.before if isinstance(r, Purified) else r.scored for r in results]


def _purified(batch: Batch) -> np.ndarray:
    pixels = torch.stack([p.pixels for p in batch.results])
    if batch.images.layout == "NHWC":
        pixels = pixels.permute(0, 2, 3, 1)
    if batch.images.datatype == "UINT8":
        return to_uint8(pixels).numpy()
    return np.ascontiguousarray(pixels.numpy(), dtype=np.float32)


def _purification(field: Callable, dtype: str) -> Extract:
    """An output of each result's purification (the result itself for /purify, ``.purified`` for /classify)."""
    def extract(batch: Batch) -> np.ndarray:
        return np.array([field(getattr(r, "purified", r)) for r in batch.results], dtype=dtype)
    return extract


def _probabilities(batch: Batch) -> np.ndarray:
    return np.array([r.probabilities for r in batch.results], dtype=np.float32)


def _class_index(batch: Batch) -> np.ndarray:
    return _probabilities(batch).argmax(axis=1).astype(np.int64)


def _label(batch: Batch) -> list[str]:
    return [batch.runtime.bundle.classes[i] for i in _class_index(batch)]


def _flagged(batch: Batch) -> np.ndarray:
    return np.array(batch.flags, dtype=np.bool_)


PURIFICATION: dict[str, tuple[str, Extract]] = {
    "error_before": ("FP64", _purification(lambda p: p.before.error, "<f8")),
    "error_after": ("FP64", _purification(lambda p: p.error_after, "<f8")),
    "z_score": ("FP64", _purification(lambda p: p.before.z_score, "<f8")),
    "p_value": ("FP64", _purification(lambda p: p.before.p_value, "<f8")),
    "steps": ("INT32", _purification(lambda p: p.steps, "<i4")),
}
CLASSIFICATION: dict[str, tuple[str, Extract]] = {
    "probabilities": ("FP32", _probabilities), "class_index": ("INT64", _class_index), "label": ("BYTES", _label)}
PURIFIED: dict[str, tuple[str, Extract]] = {"purified": ("FP32", _purified)}
FLAGGED: dict[str, tuple[str, Extract]] = {"flagged": ("BOOL", _flagged)}
"""Output name -> (declared datatype, what computes it from the batch results)."""


@dataclass(frozen=True)
class ProtocolModel:
    """One v2 model: its ``name``, the bundle's runtime, and whether it purifies only (``b-purify``)."""

    name: str
    runtime: ModelRuntime
    purify_only: bool

    @property
    def operation(self) -> str:
        """The batcher operation it runs (``service.state.OPERATIONS``)."""
        return "purify" if self.purify_only else "classify"

    @property
    def parameters(self) -> type[PurifyParameters]:
        """The model of the request parameters it takes."""
        return PurifyParameters if self.purify_only else ClassifyParameters

    def outputs(self, purify: bool = True) -> dict[str, tuple[str, Extract]]:
        """Its outputs: with purification or (classify model, ``purify`` false) without; ``flagged`` when
        the bundle has detector thresholds."""
        flagged = FLAGGED if self.runtime.detector is not None else {}
        if self.purify_only:
            return PURIFIED | PURIFICATION | flagged
        return (CLASSIFICATION | PURIFICATION if purify else CLASSIFICATION) | flagged

    def metadata(self) -> dict:
        """The model metadata response (``$metadata_model_response``), with ``parameters`` saying what the
        declared FP32 [-1, C, H, W] input also accepts and which request parameters the model takes."""
        c, h, w = self.runtime.bundle.input_shape
        classes = len(self.runtime.bundle.classes)
        shapes = {"probabilities": [-1, classes], "purified": [-1, c, h, w]}
        return {"name": self.name, "versions": [], "platform": PLATFORM,
                "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, c, h, w]}],
                "outputs": [{"name": name, "datatype": datatype, "shape": shapes.get(name, [-1])}
                            for name, (datatype, _) in self.outputs().items()],
                "parameters": {"bundle": self.runtime.name, "operation": self.operation,
                               "input_datatypes": {"UINT8": "0-255", "FP32": "0-1"},
                               "input_shapes": [[-1, c, h, w], [-1, h, w, c]],
                               "request_parameters": sorted(self.parameters.model_fields),
                               "purification_defaults": self.runtime.bundle.purification_defaults,
                               "purification_budgets": self.runtime.bundle.purification_budgets_by_name}}


def protocol_name(bundle: str, purify_only: bool) -> str:
    """The v2 model name of ``bundle``'s classify or purify model."""
    return bundle + PURIFY_SUFFIX if purify_only else bundle


def find_model(models: dict[str, ModelRuntime], name: str) -> ProtocolModel | None:
    """The v2 model called ``name`` among the served bundles ``models``, None when there is none."""
    if name in models:
        return ProtocolModel(name, models[name], False)
    bundle = name.removesuffix(PURIFY_SUFFIX)
    if bundle != name and bundle in models:
        return ProtocolModel(name, models[bundle], True)
    return None


def layout_of(model: ProtocolModel, shape: list[int], max_images: int) -> str:
    """"NCHW" or "NHWC" for an ``images`` tensor of ``shape``; TensorError when it fits neither or holds no
    or too many images. Checked before the data is read."""
    c, h, w = model.runtime.bundle.input_shape
    takes = f"[B, {c}, {h}, {w}] or [B, {h}, {w}, {c}]"
    if len(shape) != 4 or shape[0] < 1:
        raise TensorError(f"input {INPUT!r} has shape {shape}; model {model.name!r} takes {takes} with B >= 1")
    if shape[0] > max_images:
        raise TensorError(f"input {INPUT!r} holds {shape[0]} images; at most {max_images} per request, "
                          "split them over several requests")
    if shape[1:] == [c, h, w]:
        return "NCHW"
    if shape[1:] == [h, w, c]:
        return "NHWC"
    raise TensorError(f"input {INPUT!r} has shape {shape}; model {model.name!r} takes {takes}")


def to_images(array: np.ndarray, datatype: str, layout: str) -> Images:
    """The model input from a read tensor: UINT8 divided by 255, FP32 refused outside [0, 1] (NaN too)."""
    if datatype == "FP32":
        low, high = (float(array.min()), float(array.max()))
        if not (low >= 0 and high <= 1):
            raise TensorError(f"input {INPUT!r}: FP32 values must lie in [0, 1] (got {low:g} to {high:g}); "
                              "scale them, or send UINT8 in [0, 255]")
        pixels = torch.from_numpy(array if array.flags.writeable else array.copy())  # binary data: a view
    else:
        pixels = torch.from_numpy(array.astype(np.float32)).div_(255)
    if layout == "NHWC":
        pixels = pixels.permute(0, 3, 1, 2).contiguous()
    return Images(pixels, datatype, layout)
