"""Response bodies of the API (documented in OpenAPI at /docs)."""
from __future__ import annotations

from pydantic import BaseModel, Field


class ScoreOut(BaseModel):
    """The cheap detector: one DAE pass."""

    name: str = Field(description="the upload's file name or images[i]")
    error: float = Field(description="reconstruction error (eq. 7, mean squared error over pixels)")
    z_score: float = Field(description="(error - mu) / sigma under the bundle's clean calibration")
    p_value: float = Field(description="one-sided P(E >= error) under N(mu, sigma^2); small = unlike clean images")


class PurificationOut(BaseModel):
    """What purification did to one image."""

    error_before: float
    error_after: float
    z_score: float = Field(description="z-score of error_before under the calibration")
    p_value: float = Field(description="one-sided p-value of error_before under the calibration")
    steps: int = Field(description="update steps taken (0: already under mu)")


class FlagOut(BaseModel):
    """The detector's answer for one input (docs/SERVICE.md, "Flagged images")."""

    flagged: bool | None = Field(description="true: the input's reconstruction error (error_before) is above the "
                                 "detector's threshold at fpr, unlike clean images (adversarial or out of "
                                 "distribution); null: the model has no detector thresholds, flags are unavailable")
    fpr: float | None = Field(description="the false-positive rate whose threshold was used: at most this share of "
                              "clean held-out training images is flagged; null when flags are unavailable")
    withheld: bool = Field(False, description="true: on_flag=reject and the image was flagged, so its answer "
                           "(label, class_index, probabilities, top5; for /purify the image) is null")


class PurifiedOut(PurificationOut, FlagOut):
    name: str
    image: str | None = Field(description="the purified image, base64 PNG (L or RGB) at the upload's size; "
                              "null when withheld")


class PurifyResponse(BaseModel):
    model: str
    variant: str
    n: int
    results: list[PurifiedOut]


class RankedClass(BaseModel):
    """One class of the most probable few."""

    class_index: int
    label: str = Field(description="the class's name")
    probability: float


class ClassifiedOut(FlagOut):
    name: str
    class_index: int | None = Field(description="the most probable class; null when withheld")
    label: str | None = Field(description="its name; null when withheld")
    probabilities: list[float] | None = Field(description="softmax of the classifier's logits, one per class; "
                                              "null when withheld")
    purification: PurificationOut | None = Field(description="null when purify=false")
    top5: list[RankedClass] | None = Field(None, description="the five most probable classes, most probable first; "
                                           "only for bundles with more than 10 classes, else null")


class ClassifyResponse(BaseModel):
    model: str
    purified: bool
    results: list[ClassifiedOut]


class ScoreResponse(BaseModel):
    model: str
    results: list[ScoreOut]


class ModelOut(BaseModel):
    name: str
    classes: list[str]
    input_shape: list[int] = Field(description="(C, H, W)")
    calibration: dict = Field(description="mu, sigma, n and the histogram of the clean reconstruction error, and "
                                                   "detector: its thresholds per false-positive rate (absent: no flags)")
    purification_defaults: dict
    purification_budgets: dict[str, dict] = Field(description="ε -> the overrides of purification_defaults tuned "
                                                              "for that attack budget; a request takes one with "
                                                              "budget=ε (empty: none shipped)")
    preprocessing: dict | None = Field(description="resize (shorter side), crop, interpolation applied to uploads "
                                                   "of any size; null: uploads must be at input_shape")
    metrics: dict = Field(description="test metrics recorded in the bundle")


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelOut]


class Status(BaseModel):
    status: str
