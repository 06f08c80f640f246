"""The app factory: ``create_app(settings)`` wires state, lifespan, routes, errors and middleware."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from apudae.service.api.routes import api_router
from apudae.service.errors import install_error_handlers
from apudae.service.middleware import AdmissionMiddleware, BodyLimitMiddleware, MetricsMiddleware
from apudae.service.settings import Settings
from apudae.service.state import ServiceState

IMAGE_ROUTES = frozenset({"/purify", "/classify", "/score"})
DESCRIPTION = ("Purifies images with a denoising autoencoder before classification (APuDAE). "
               "Every error is JSON `{\"detail\": ...}` saying what to fix. See docs/SERVICE.md.")


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
    app = FastAPI(title="apudae", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.service = state
    install_error_handlers(app)
    app.include_router(api_router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=state.settings.max_body_bytes)
    limits = state.settings  # an image request holds at least one image: the queue plus one batch bounds them
    app.add_middleware(AdmissionMiddleware, max_in_flight=limits.max_queue_size + limits.max_batch_size,
                       paths=IMAGE_ROUTES, metrics=state.metrics)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app
