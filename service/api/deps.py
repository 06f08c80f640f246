"""Shared route dependencies as ``Annotated`` aliases: state, model, images, purification options, admin;
and ``reject_unknown_query``, which every route runs first.

The dependencies of the inference routes are coroutines that do not block: FastAPI runs a plain-function
dependency in a worker thread, a thread hop per dependency per request."""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Annotated

import torch
from fastapi import Depends, HTTPException, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from apudae.models.purification import VARIANTS, PurifySettings
from apudae.service.api.uploads import read_uploads
from apudae.service.engine import ModelRuntime
from apudae.service.imaging import DecodedImage, ImageError, decode_image
from apudae.service.middleware import MODEL_SCOPE_KEY
from apudae.service.state import ServiceState, UnknownModel

log = logging.getLogger(__name__)
MAX_STEPS = 100
BUDGET_HELP = ("the attack budget (l_inf epsilon) to use the bundle's settings tuned for, one of its "
               "purification_budgets in /models; default: the bundle's purification defaults")


def declared_query(dependant: Dependant) -> list[str]:
    """The query parameter names ``dependant`` and its sub-dependencies declare, in declaration order."""
    names = [field.alias for field in dependant.query_params]
    for sub in dependant.dependencies:
        names += declared_query(sub)
    return list(dict.fromkeys(names))


async def reject_unknown_query(request: Request) -> None:
    """422 for any query parameter the matched route does not declare, naming it and the valid ones: a
    misspelt option (``?modle=``) must not silently fall back to its default. A coroutine, so that it runs
    on the event loop: FastAPI hands a plain function dependency to a worker thread, on every request."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    valid = declared_query(route.dependant)
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in valid]
    if unknown:
        takes = ", ".join(valid) if valid else "none"
        raise RequestValidationError([
            {"loc": ("query", name), "type": "extra_forbidden",
             "msg": f"unknown query parameter {name!r}; {route.path} takes: {takes}"} for name in unknown])


def get_state(request: Request) -> ServiceState:
    """The running service's state."""
    return request.app.state.service


async def _state(request: Request) -> ServiceState:
    """``get_state`` as a dependency (a coroutine: see the module docstring)."""
    return get_state(request)


StateDep = Annotated[ServiceState, Depends(_state)]


def get_model(state: ServiceState, model: str | None = None) -> ModelRuntime:
    """The model called ``model`` (the default model when None); 503 before the models are loaded, 404 for
    an unknown name."""
    if not state.models:
        raise HTTPException(503, "the models are still loading; retry when GET /readyz answers 200",
                            headers={"Retry-After": "5"})
    try:
        return state.model(model)
    except UnknownModel as err:
        raise HTTPException(404, str(err)) from None


def record_model(request: Request, runtime: ModelRuntime) -> ModelRuntime:
    """Note in the request's scope which model serves it (the access log names it); returns ``runtime``."""
    request.scope[MODEL_SCOPE_KEY] = runtime.name
    return runtime


async def requested_model(request: Request, state: StateDep, model: Annotated[str | None, Query(
        description="bundle name (GET /models); default: the configured default model")] = None) -> ModelRuntime:
    """The ``model`` query parameter's runtime (``get_model``), recorded for the access log."""
    return record_model(request, get_model(state, model))


ModelDep = Annotated[ModelRuntime, Depends(requested_model)]


@dataclass(frozen=True)
class Images:
    """Decoded request images: ``pixels`` (k, C, H, W) float32 in [0, 1] plus each upload's name and size."""

    pixels: torch.Tensor
    names: list[str]
    decoded: list[DecodedImage]


async def get_images(request: Request, state: StateDep, runtime: ModelDep, resize: Annotated[bool, Query(
        description="resize images whose size differs from the model's instead of refusing them")] = False) -> Images:
    """Read and decode the body's images for ``runtime``; 4xx with what to fix on bad input."""
    preprocessing = runtime.bundle.preprocessing
    max_images, max_pixels = state.settings.image_limits(photos=preprocessing is not None)
    uploads = await read_uploads(request, max_images)
    shape = runtime.bundle.input_shape
    try:  # decoding a large image takes a while: off the event loop; one full-size image in memory at a time
        decoded = await asyncio.to_thread(
            lambda: [decode_image(u.data, u.name, shape, resize, max_pixels, preprocessing) for u in uploads])
    except ImageError as err:
        raise HTTPException(422, str(err)) from None
    return Images(torch.stack([d.pixels for d in decoded]), [u.name for u in uploads], decoded)


ImagesDep = Annotated[Images, Depends(get_images)]


async def get_purify_settings(
        runtime: ModelDep,
        variant: Annotated[str | None, Query(description=f"one of {', '.join(VARIANTS)}; default: the bundle's")] = None,
        n: Annotated[int | None, Query(ge=0, le=MAX_STEPS, description="most purification steps")] = None,
        seed: Annotated[int | None, Query(ge=0, lt=2**63, description="makes the noise repeatable")] = None,
        budget: Annotated[float | None, Query(gt=0, le=1, description=BUDGET_HELP)] = None,
) -> PurifySettings:
    """The bundle's purification settings (for ``budget`` when given) with the request's overrides; 422 for an
    unknown variant or a budget the bundle has no settings for."""
    try:
        return runtime.default_settings(budget=budget, variant=variant, n=n, seed=seed)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None


PurifySettingsDep = Annotated[PurifySettings, Depends(get_purify_settings)]

_bearer = HTTPBearer(auto_error=False, description="the admin token (APUDAE_ADMIN_TOKEN)")


def require_admin(state: StateDep,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """403 when no admin token is configured; 401 unless the bearer token matches (constant time)."""
    token = state.settings.admin_token
    if token is None:
        raise HTTPException(403, "admin routes are disabled: set APUDAE_ADMIN_TOKEN to enable them")
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        log.warning("admin request refused: missing or wrong bearer token")
        raise HTTPException(401, "missing or wrong admin token; send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
