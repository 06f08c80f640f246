"""POST /purify: purified images with their reconstruction errors before and after, and the detector's flags.

The detector options ``fpr`` and ``on_flag`` (``DetectionDep``) are shared with /classify."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response

from apudae.models.detector import DEFAULT_FPR, FPRS, Detector, DetectorError
from apudae.service.api.deps import ImagesDep, ModelDep, PurifySettingsDep, StateDep
from apudae.service.api.schemas import FlagOut, PurificationOut, PurifiedOut, PurifyResponse
from apudae.service.api.uploads import OPENAPI_BODY
from apudae.service.engine import ModelRuntime, Purified, Scored
from apudae.service.imaging import encode_png
from apudae.service.metrics import ServiceMetrics

router = APIRouter(tags=["inference"])
RATES = ", ".join(f"{rate:g}" for rate in FPRS)


@dataclass(frozen=True)
class Detection:
    """The detector as one request uses it: the model's ``detector`` at the request's ``fpr`` (both None when
    the model has no detector thresholds) and whether a flagged image's answer is withheld (``reject``)."""

    detector: Detector | None
    fpr: float | None
    reject: bool

    def flags(self, scores: list[Scored]) -> list[bool | None]:
        """Per input: flagged by the detector at ``fpr`` (``Detector.flags``), or None when flags are unavailable."""
        if self.detector is None:
            return [None] * len(scores)
        errors = torch.tensor([s.error for s in scores], dtype=torch.float64)
        return self.detector.flags(errors, self.fpr).tolist()

    def out(self, flagged: bool | None) -> FlagOut:
        return FlagOut(flagged=flagged, fpr=self.fpr, withheld=bool(flagged) and self.reject)

    def observe(self, metrics: ServiceMetrics, model: str, flags: list[bool | None]) -> None:
        """Count the checked and the flagged inputs (nothing when flags are unavailable)."""
        if self.fpr is not None:
            metrics.observe_detection(model, self.fpr, flags)


def detection_of(runtime: ModelRuntime, fpr: float | None, on_flag: str) -> Detection:
    """The detector of ``runtime`` at ``fpr`` (None: the default), withholding flagged answers when ``on_flag``
    is "reject"; 422 for a rate the model has no threshold for, and for fpr or
    on_flag=reject on a model without detector thresholds."""
    detector = runtime.detector
    if detector is None:
        if fpr is not None or on_flag == "reject":
            raise HTTPException(422, f"model {runtime.name!r} has no detector thresholds (calibrated before the "
                                     "detector existed), so flags are unavailable: drop fpr and on_flag, or "
                                     "re-calibrate it with `apudae calibrate-detector --bundle <dir>`")
        return Detection(None, None, False)
    fpr = DEFAULT_FPR if fpr is None else fpr
    try:
        detector.threshold(fpr)
    except DetectorError as err:
        raise HTTPException(422, f"fpr: {err}") from None
    return Detection(detector, fpr, on_flag == "reject")


async def get_detection(
        runtime: ModelDep,
        fpr: Annotated[float | None, Query(description=f"false-positive rate of the detector's threshold, one of "
                                                       f"{RATES} (the model's stored rates); default {DEFAULT_FPR:g}")] = None,
        on_flag: Annotated[Literal["label", "reject"], Query(description="what a flagged image gets: 'label' (the "
                           "default) answers as usual with flagged=true; 'reject' withholds its answer")] = "label",
) -> Detection:
    """The request's detector options (``detection_of``)."""
    return detection_of(runtime, fpr, on_flag)


DetectionDep = Annotated[Detection, Depends(get_detection)]


def purification_out(p: Purified) -> PurificationOut:
    """The numbers of one purification."""
    return PurificationOut(error_before=p.before.error, error_after=p.error_after, z_score=p.before.z_score,
                           p_value=p.before.p_value, steps=p.steps)


@router.post("/purify", response_model=PurifyResponse, openapi_extra=OPENAPI_BODY, responses={
    200: {"content": {"image/png": {}}, "description": "JSON, or the PNG itself with Accept: image/png"}})
async def purify(state: StateDep, runtime: ModelDep, images: ImagesDep, settings: PurifySettingsDep,
                 detection: DetectionDep,
                 accept: Annotated[str, Header()] = "application/json") -> Response | PurifyResponse:
    """Purify each image and flag those the detector finds unlike clean images. With ``Accept: image/png``
    and one image the answer is the PNG itself (errors, steps and the flag in ``X-Apudae-*`` headers; a
    flagged image with on_flag=reject is a 422)."""
    want_png = "image/png" in accept and "application/json" not in accept
    if want_png and len(images.names) != 1:
        raise HTTPException(406, "Accept: image/png needs exactly one image; send one or accept application/json")
    results = await state.run(runtime, "purify", settings, images.pixels)
    state.metrics.observe_purified(runtime.name, results)
    flags = detection.flags([p.before for p in results])
    detection.observe(state.metrics, runtime.name, flags)
    if want_png:
        flag = detection.out(flags[0])
        if flag.withheld:
            raise HTTPException(422, f"the image was flagged at fpr={flag.fpr:g} and on_flag=reject withholds it; "
                                     "ask with on_flag=label for the purified image")
        out = purification_out(results[0])
        return Response(encode_png(results[0].pixels, images.decoded[0].size), media_type="image/png", headers={
            "X-Apudae-Error-Before": repr(out.error_before), "X-Apudae-Error-After": repr(out.error_after),
            "X-Apudae-Z-Score": repr(out.z_score), "X-Apudae-Steps": str(out.steps),
            "X-Apudae-Flagged": "unavailable" if flag.flagged is None else str(flag.flagged).lower(),
            **({"X-Apudae-FPR": f"{flag.fpr:g}"} if flag.fpr is not None else {})})
    out = []
    for name, p, decoded, flagged in zip(images.names, results, images.decoded, flags):
        flag = detection.out(flagged)
        image = None if flag.withheld else base64.b64encode(encode_png(p.pixels, decoded.size)).decode()
        out.append(PurifiedOut(name=name, image=image, **purification_out(p).model_dump(), **flag.model_dump()))
    return PurifyResponse(model=runtime.name, variant=settings.variant, n=settings.n, results=out)
