"""POST /classify: class index, label and probabilities, purified first unless purify=false."""
from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query

from apudae.service.api.deps import ImagesDep, ModelDep, PurifySettingsDep, StateDep
from apudae.service.api.routes.purify import purification_out
from apudae.service.api.schemas import ClassifiedOut, ClassifyResponse
from apudae.service.api.uploads import OPENAPI_BODY

router = APIRouter(tags=["inference"])


@router.post("/classify", response_model=ClassifyResponse, openapi_extra=OPENAPI_BODY)
async def classify(state: StateDep, runtime: ModelDep, images: ImagesDep, settings: PurifySettingsDep,
                   purify: Annotated[bool, Query(description="purify before classifying")] = True) -> ClassifyResponse:
    """Classify each image with the bundle's ONNX classifier, after purification by default."""
    chosen = settings if purify else None
    results = await state.run(runtime, "classify", chosen, images.pixels, partial(runtime.classify, settings=chosen))
    if purify:
        state.metrics.observe_purified(runtime.name, (c.purified for c in results))
    classes = runtime.bundle.classes
    out = []
    for name, c in zip(images.names, results):
        index = max(range(len(c.probabilities)), key=c.probabilities.__getitem__)
        out.append(ClassifiedOut(name=name, class_index=index, label=classes[index], probabilities=c.probabilities,
                                 purification=purification_out(c.purified) if c.purified else None))
    return ClassifyResponse(model=runtime.name, purified=purify, results=out)
