"""Exception handlers: every error is JSON ``{"detail": "<what went wrong and what to fix>"}``."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from apudae.service.batcher import DeadlineExceeded, QueueFull, ShuttingDown

log = logging.getLogger(__name__)


def _error(status: int, detail: str, **extra) -> JSONResponse:
    headers = {"Retry-After": str(extra.pop("retry_after"))} if "retry_after" in extra else None
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return _error(422, f"invalid {where}: {first.get('msg')}", errors=[
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in err.errors()])


async def _queue_full(request: Request, err: QueueFull) -> JSONResponse:
    return _error(429, str(err), retry_after=err.retry_after)


async def _deadline(request: Request, err: DeadlineExceeded) -> JSONResponse:
    return _error(503, f"{err}; the server is overloaded, retry later or send fewer images", retry_after=1)


async def _shutting_down(request: Request, err: ShuttingDown) -> JSONResponse:
    return _error(503, f"{err}; retry on another replica", retry_after=1)


async def _unexpected(request: Request, err: Exception) -> JSONResponse:
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(err).__name__, err)
    return _error(500, f"internal error ({type(err).__name__}); retry, and report it if it persists")


ERROR_SCHEMA = {"title": "Error", "type": "object", "required": ["detail"], "properties": {
    "detail": {"type": "string", "description": "what went wrong and what to fix"},
    "errors": {"type": "array", "items": {"type": "object"}, "description": "each invalid field (422 only)"}}}


def _document_errors(app: FastAPI) -> None:
    """Make the OpenAPI schema's 422 answers what ``_validation`` sends, not FastAPI's default list."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            FastAPI.openapi(app)["components"]["schemas"]["HTTPValidationError"] = ERROR_SCHEMA
        return app.openapi_schema
    app.openapi = openapi


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app`` and document their answers in its OpenAPI schema."""
    _document_errors(app)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(DeadlineExceeded, _deadline)
    app.add_exception_handler(ShuttingDown, _shutting_down)
    app.add_exception_handler(Exception, _unexpected)
