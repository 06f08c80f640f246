"""POST /score: reconstruction error, z-score and p-value from one DAE pass (the cheap detector)."""
from __future__ import annotations

from fastapi import APIRouter

from apudae.service.api.deps import ImagesDep, ModelDep, StateDep
from apudae.service.api.schemas import ScoreOut, ScoreResponse
from apudae.service.api.uploads import OPENAPI_BODY

router = APIRouter(tags=["inference"])


@router.post("/score", response_model=ScoreResponse, openapi_extra=OPENAPI_BODY)
async def score(state: StateDep, runtime: ModelDep, images: ImagesDep) -> ScoreResponse:
    """Score each image against the bundle's calibration without purifying it."""
    scores = await state.run(runtime, "score", None, images.pixels)
    state.metrics.observe_inputs(runtime.name, scores)
    return ScoreResponse(model=runtime.name, results=[
        ScoreOut(name=name, error=s.error, z_score=s.z_score, p_value=s.p_value) for name, s in zip(images.names, scores)])
