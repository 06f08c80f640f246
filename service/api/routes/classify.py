"""POST /classify: class index, label and probabilities, purified first unless purify=false, with the
detector's flag (a flagged image's answer withheld with on_flag=reject)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from apudae.service.api.deps import ImagesDep, ModelDep, PurifySettingsDep, StateDep
from apudae.service.api.routes.purify import DetectionDep, purification_out
from apudae.service.api.schemas import ClassifiedOut, ClassifyResponse, RankedClass
from apudae.service.api.uploads import OPENAPI_BODY

router = APIRouter(tags=["inference"])
TOP_K = 5
TOP_K_ABOVE = 10  # bundles with more classes than this also answer their TOP_K most probable


def ranked(probabilities: list[float], classes: list[str], k: int = TOP_K) -> list[RankedClass]:
    """The ``k`` most probable classes, most probable first (ties: lower index first)."""
    order = sorted(range(len(probabilities)), key=lambda i: (-probabilities[i], i))[:k]
    return [RankedClass(class_index=i, label=classes[i], probability=probabilities[i]) for i in order]


@router.post("/classify", response_model=ClassifyResponse, openapi_extra=OPENAPI_BODY)
async def classify(state: StateDep, runtime: ModelDep, images: ImagesDep, settings: PurifySettingsDep,
                   detection: DetectionDep,
                   purify: Annotated[bool, Query(description="purify before classifying")] = True) -> ClassifyResponse:
    """Classify each image with the bundle's ONNX classifier, after purification by default, and flag those
    the detector finds unlike clean images; bundles with more than 10 classes also answer each image's top 5."""
    chosen = settings if purify else None
    results = await state.run(runtime, "classify", chosen, images.pixels)
    if purify:
        state.metrics.observe_purified(runtime.name, (c.purified for c in results))
    flags = detection.flags([c.scored for c in results])
    detection.observe(state.metrics, runtime.name, flags)
    classes = runtime.bundle.classes
    out = []
    for name, c, flagged in zip(images.names, results, flags):
        flag = detection.out(flagged)
        purification = purification_out(c.purified) if c.purified else None
        if flag.withheld:
            out.append(ClassifiedOut(name=name, class_index=None, label=None, probabilities=None,
                                     purification=purification, **flag.model_dump()))
            continue
        top = ranked(c.probabilities, classes)
        out.append(ClassifiedOut(name=name, class_index=top[0].class_index, label=top[0].label,
                                 probabilities=c.probabilities, purification=purification,
                                 top5=top if len(classes) > TOP_K_ABOVE else None, **flag.model_dump()))
    return ClassifyResponse(model=runtime.name, purified=purify, results=out)
