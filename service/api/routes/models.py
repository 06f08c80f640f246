"""GET /models: what each served bundle is."""
from __future__ import annotations

from fastapi import APIRouter

from apudae.service.api.deps import StateDep, get_model
from apudae.service.api.schemas import ModelOut, ModelsResponse

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelsResponse)
async def list_models(state: StateDep) -> ModelsResponse:
    """Each bundle's classes, input shape, preprocessing, calibration, purification defaults and budgets, and test metrics."""
    default = get_model(state).name
    return ModelsResponse(default=default, models=[
        ModelOut(name=name, classes=r.bundle.classes, input_shape=list(r.bundle.input_shape),
                 calibration=r.calibration.to_dict(), purification_defaults=r.bundle.purification_defaults,
                 purification_budgets=r.bundle.purification_budgets_by_name,
                 preprocessing=r.bundle.meta.get("preprocessing"),
                 metrics=r.bundle.meta.get("metrics", {}))
        for name, r in state.models.items()])
