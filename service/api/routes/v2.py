"""The Open Inference Protocol (KServe v2 / Triton) REST API under /v2, with the binary tensor data extension.

Server metadata ``GET /v2``, ``GET /v2/health/live`` and ``/v2/health/ready``, model metadata
``GET /v2/models/{name}``, ``GET /v2/models/{name}/ready`` and ``POST /v2/models/{name}/infer``. The
models and their tensors are ``service.api.v2_models``'; requests are read by ``service.api.v2_requests``.
Inference shares the batcher, limits, deadline, admission control and metrics with /classify and
/purify; errors are ``{"error": ...}`` (``service.api.v2_errors``). Model versions are not served.

``POST /v2/models/{name}/infer`` is not on ``router``: ``add_infer_route`` adds it to the app's own router as
a ``DirectRoute`` (``service.api.direct``), which skips FastAPI's routing through the included routers and
its dependency solving; ``infer`` reads and checks the whole request itself.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from apudae.service.api.deps import StateDep, get_model, get_state, record_model
from apudae.service.api.direct import DirectRoute
from apudae.service.api.v2_models import Batch, ProtocolModel, find_model, input_scores, protocol_name
from apudae.service.api.v2_requests import answer, read_inference
from apudae.service.api.v2_schemas import INFER_BODY, INFERENCE_RESPONSE, MODEL_METADATA, SERVER_METADATA, answers
from apudae.service.state import ServiceState

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
EXTENSIONS = ["binary_tensor_data"]
LIVE = {"type": "object", "properties": {"live": {"type": "boolean"}}}
READY = {"type": "object", "properties": {"ready": {"type": "boolean"}, "name": {"type": "string"}}}


async def protocol_model(request: Request, name: str) -> ProtocolModel:
    """The v2 model ``name`` (recorded for the access log); 503 while the models load, 404 when unknown.
    A coroutine, so that FastAPI runs it on the event loop rather than handing it to a worker thread."""
    state = get_state(request)
    model = find_model(state.models, name)
    if model is None:
        get_model(state)  # no models yet: 503 with Retry-After
        served = ", ".join(protocol_name(b, p) for b in state.models for p in (False, True))
        raise HTTPException(404, f"unknown model {name!r}; served models: {served} (GET /v2/models/<name>)")
    record_model(request, model.runtime)
    return model


ProtocolModelDep = Annotated[ProtocolModel, Depends(protocol_model)]


def _readiness(state: ServiceState, **fields) -> JSONResponse:
    if state.ready:
        return JSONResponse({**fields, "ready": True})
    status = "shutting down" if state.draining else "loading models"
    return JSONResponse({**fields, "ready": False, "error": f"not ready: {status}"}, status_code=503,
                        headers={"Retry-After": "5"})


@router.get("", responses=answers(SERVER_METADATA))
async def server_metadata(request: Request) -> dict:
    """Server name, version and protocol extensions."""
    return {"name": request.app.title, "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live", responses=answers(LIVE))
async def live() -> dict:
    """Live: the process answers."""
    return {"live": True}


@router.get("/health/ready", responses=answers(READY))
async def ready(state: StateDep) -> JSONResponse:
    """Ready: every loadable model is loaded and warm, and the service is not shutting down (else 503)."""
    return _readiness(state)


@router.get("/models/{name}", responses=answers(MODEL_METADATA))
async def model_metadata(model: ProtocolModelDep) -> dict:
    """The model's inputs, outputs and request parameters (see docs/SERVICE.md, Open Inference Protocol)."""
    return model.metadata()


@router.get("/models/{name}/ready", responses=answers(READY))
async def model_ready(state: StateDep, model: ProtocolModelDep) -> JSONResponse:
    """Ready when the service is (its models load together)."""
    return _readiness(state, name=model.name)


async def infer(request: Request, name: str) -> Response:
    """Classify (model ``{bundle}``) or purify (``{bundle}-purify``) a batch of images sent as a tensor:
    JSON data, or binary data after the JSON (binary tensor data extension)."""
    model = await protocol_model(request, name)
    state = get_state(request)
    max_images, _ = state.settings.image_limits(photos=model.runtime.bundle.preprocessing is not None)
    inference = await read_inference(request, model, max_images)
    results = await state.run(model.runtime, model.operation, inference.settings, inference.images.pixels)
    if model.purify_only:
        state.metrics.observe_purified(model.runtime.name, results)
    elif inference.settings is not None:
        state.metrics.observe_purified(model.runtime.name, (c.purified for c in results))
    detection = inference.detection
    flags = detection.flags(input_scores(results))
    detection.observe(state.metrics, model.runtime.name, flags)
    flagged = flags if detection.fpr is not None else None
    return answer(model, inference, Batch(results, inference.images, model.runtime, flagged))


def add_infer_route(app_router: APIRouter) -> None:
    """Add ``POST /v2/models/{name}/infer`` (``infer``) to the app's own router as a ``DirectRoute``; call it
    before the other routers are included, so that its path is matched first."""
    app_router.add_api_route(f"{router.prefix}/models/{{name}}/infer", infer, methods=["POST"],
                             route_class_override=DirectRoute, tags=router.tags, openapi_extra=INFER_BODY,
                             responses=answers(INFERENCE_RESPONSE, binary=True), response_class=Response)
