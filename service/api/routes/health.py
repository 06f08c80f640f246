"""Probes and metrics: /healthz (live), /readyz (ready), /metrics (Prometheus)."""
from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apudae.service.api.deps import StateDep
from apudae.service.api.schemas import Status

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Status)
async def healthz() -> Status:
    """Live: the process answers."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses={503: {"model": Status}})
async def readyz(state: StateDep) -> Response:
    """Ready: every loadable model is loaded and warm, and the service is not shutting down."""
    if state.ready:
        return JSONResponse({"status": "ready"})
    status = "shutting down" if state.draining else "loading models"
    return JSONResponse({"status": status, "detail": f"not ready: {status}"}, status_code=503)


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition of the service's metrics."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
