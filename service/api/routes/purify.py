"""POST /purify: purified images with their reconstruction errors before and after."""
from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response

from apudae.service.api.deps import ImagesDep, ModelDep, PurifySettingsDep, StateDep
from apudae.service.api.schemas import PurificationOut, PurifiedOut, PurifyResponse
from apudae.service.api.uploads import OPENAPI_BODY
from apudae.service.engine import Purified
from apudae.service.imaging import encode_png

router = APIRouter(tags=["inference"])


def purification_out(p: Purified) -> PurificationOut:
    """The numbers of one purification."""
    return PurificationOut(error_before=p.before.error, error_after=p.error_after, z_score=p.before.z_score,
                           p_value=p.before.p_value, steps=p.steps)


@router.post("/purify", response_model=PurifyResponse, openapi_extra=OPENAPI_BODY, responses={
    200: {"content": {"image/png": {}}, "description": "JSON, or the PNG itself with Accept: image/png"}})
async def purify(state: StateDep, runtime: ModelDep, images: ImagesDep, settings: PurifySettingsDep,
                 accept: Annotated[str, Header()] = "application/json") -> Response | PurifyResponse:
    """Purify each image. With ``Accept: image/png`` and one image the answer is the PNG itself
    (errors and steps in ``X-Apudae-*`` headers)."""
    want_png = "image/png" in accept and "application/json" not in accept
    if want_png and len(images.names) != 1:
        raise HTTPException(406, "Accept: image/png needs exactly one image; send one or accept application/json")
    results = await state.run(runtime, "purify", settings, images.pixels)
    state.metrics.observe_purified(runtime.name, results)
    pngs = [encode_png(p.pixels, d.size) for p, d in zip(results, images.decoded)]
    if want_png:
        out = purification_out(results[0])
        return Response(pngs[0], media_type="image/png", headers={
            "X-Apudae-Error-Before": repr(out.error_before), "X-Apudae-Error-After": repr(out.error_after),
            "X-Apudae-Z-Score": repr(out.z_score), "X-Apudae-Steps": str(out.steps)})
    return PurifyResponse(model=runtime.name, variant=settings.variant, n=settings.n, results=[
        PurifiedOut(name=name, image=base64.b64encode(png).decode(), **purification_out(p).model_dump())
        for name, p, png in zip(images.names, results, pngs)])
