"""POST /classify: class index, label and probabilities, purified first unless purify=false."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from apudae.service.api.deps import ImagesDep, ModelDep, PurifySettingsDep, StateDep
from apudae.service.api.routes.purify import purification_out
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
                   purify: Annotated[bool, Query(description="purify before classifying")] = True) -> ClassifyResponse:
    """Classify each image with the bundle's ONNX classifier, after purification by default; bundles with
    more than 10 classes also answer each image's top 5."""
    chosen = settings if purify else None
    results = await state.run(runtime, "classify", chosen, images.pixels)
    if purify:
        state.metrics.observe_purified(runtime.name, (c.purified for c in results))
    classes = runtime.bundle.classes
    out = []
    for name, c in zip(images.names, results):
        top = ranked(c.probabilities, classes)
        out.append(ClassifiedOut(name=name, class_index=top[0].class_index, label=top[0].label,
                                 probabilities=c.probabilities,
                                 purification=purification_out(c.purified) if c.purified else None,
                                 top5=top if len(classes) > TOP_K_ABOVE else None))
    return ClassifyResponse(model=runtime.name, purified=purify, results=out)
