"""The app factory: ``create_app(settings)`` wires state, lifespan, routes, errors and middleware.

/docs and /redoc load their scripts and styles from the app itself (fastapi-offline's copies, under
/static-offline-docs), so they work without internet. Every route refuses query parameters it does not
declare (``reject_unknown_query``). Under /v2 the Open Inference Protocol is served (``api.routes.v2``), whose
errors read ``{"error": ...}`` (``api.v2_errors``)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from apudae.service.api.deps import reject_unknown_query
from apudae.service.api.routes import api_router
from apudae.service.api.routes.v2 import add_infer_route
from apudae.service.api.v2_errors import ProtocolErrorMiddleware
from apudae.service.errors import install_error_handlers
from apudae.service.middleware import (AccessLogMiddleware, AdmissionMiddleware, BodyLimitMiddleware,
                                       MetricsMiddleware)
from apudae.service.settings import Settings
from apudae.service.state import ServiceState


class ImageRoutes:
    """The request paths that carry images, which admission control bounds: /purify, /classify, /score and
    the Open Inference Protocol's /v2/models/{name}/infer."""

    FIXED = frozenset({"/purify", "/classify", "/score"})

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (path in self.FIXED or (
            path.startswith("/v2/models/") and path.endswith("/infer") and path.count("/") == 4))


IMAGE_ROUTES = ImageRoutes()
DESCRIPTION = ("Purifies images with a denoising autoencoder before classification (APuDAE). "
               "Every error is JSON `{\"detail\": ...}` saying what to fix (under /v2, the Open Inference "
               "Protocol's `{\"error\": ...}`). See docs/SERVICE.md.")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and warm every model before serving; on shutdown finish accepted requests."""
    state: ServiceState = app.state.service
    await state.start()
    try:
        yield
    finally:
        await state.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app on ``settings`` (default: read from the environment)."""
    state = ServiceState(settings or Settings())
    app = FastAPIOffline(title="apudae", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                         dependencies=[Depends(reject_unknown_query)])
    app.state.service = state
    install_error_handlers(app)
    add_infer_route(app.router)  # first: see service.api.direct
    app.include_router(api_router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=state.settings.max_body_bytes)
    limits = state.settings  # an image request holds at least one image: the queue plus one batch bounds them
    app.add_middleware(AdmissionMiddleware, max_in_flight=limits.max_queue_size + limits.max_batch_size,
                       paths=IMAGE_ROUTES, metrics=state.metrics)
    app.add_middleware(ProtocolErrorMiddleware)  # outside the body limit and admission: their refusals too
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    if state.settings.access_log:  # outermost: it logs every answer, the middleware's refusals included
        app.add_middleware(AccessLogMiddleware)
    return app
