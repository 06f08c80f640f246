"""ASGI middleware: admission control (429), request-body limit (413), per-route request metrics and the
access log.

All are plain ASGI so they see every request, including those refused before routing.
"""
from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
import uuid
from collections.abc import Container

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apudae.service.metrics import ServiceMetrics

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ACCESS_LOGGER = "apudae.access"
MODEL_SCOPE_KEY = "apudae.model"  # set by the model dependency (service.api.deps) to the serving model's name
REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")  # an incoming id is kept only when it is this tame
MAX_LOGGED_PATH = 200


class BodyTooLarge(HTTPException):
    """The request body exceeds the configured limit (413)."""


async def send_json_error(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer a plain-ASGI request with ``{"detail": ...}``."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413: at once from Content-Length, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return f"request body exceeds {self.max_bytes} bytes; send fewer or smaller images"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await send_json_error(send, 413 if length.isdigit() else 400,
                                         self._message() if length.isdigit() else "invalid Content-Length header")
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(413, self._message())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await send_json_error(send, 413, self._message())


class AdmissionMiddleware:
    """Refuse requests to ``paths`` beyond ``max_in_flight`` at once with 429 and Retry-After, before
    their bodies are read or decoded: under overload a refusal must cost next to nothing, else
    reading and decoding what will be refused anyway starves the event loop and every answer is late."""

    def __init__(self, app: ASGIApp, max_in_flight: int, paths: Container[str], metrics: ServiceMetrics):
        self.app, self.max_in_flight, self.paths, self.metrics = app, max_in_flight, paths, metrics
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.max_in_flight:
            self.metrics.rejections.labels("queue_full").inc()
            return await send_json_error(send, 429, "the server is at capacity; retry after 1 s",
                                         [(b"retry-after", b"1")])
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()


class StatusRecordingSend:
    """An ASGI ``send`` around ``send``: remembers the response's status (500 until a response starts, so a
    request that fails before answering counts as one) and appends ``headers`` to the response start."""

    def __init__(self, send: Send, headers: tuple[tuple[bytes, bytes], ...] = ()):
        self.status, self._send, self._headers = 500, send, headers

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self._headers:
                message = {**message, "headers": [*message.get("headers", ()), *self._headers]}
        await self._send(message)


class MetricsMiddleware:
    """Count requests by route template, method and status; time them by route template."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        recording_send = StatusRecordingSend(send)
        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(route, method, str(recording_send.status)).inc()
            self.metrics.request_seconds.labels(route, method).observe(time.perf_counter() - started)


class AccessLogMiddleware:
    """One line per request on the ``apudae.access`` logger (INFO), every status included, in uvicorn's
    access-log form with key=value fields after it::

        127.0.0.1:52110 - "POST /classify HTTP/1.1" 200 latency_ms=12.3 request_id=3f2a... model=mnist

    The path is logged without its query string (whose values may be secret), percent-quoted and cut at
    200 characters; headers and bodies are never logged. The request id is the request's X-Request-ID when
    that is 1-64 characters of [A-Za-z0-9._-], else a new one; either way the answer carries it in
    X-Request-ID. ``model`` is the model that served the request, "-" when none did. The same values
    are on the log record as ``extra`` attributes (client, method, path, status, latency_ms, request_id,
    model) for structured formatters."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = given.decode() if REQUEST_ID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()
        tagging_send = StatusRecordingSend(send, ((REQUEST_ID_HEADER, request_id.encode()),))
        try:
            await self.app(scope, receive, tagging_send)
        finally:
            self._write(scope, tagging_send.status, (time.perf_counter() - started) * 1000, request_id)

    def _write(self, scope: Scope, status: int, latency_ms: float, request_id: str) -> None:
        client = scope.get("client")
        fields = {"client": f"{client[0]}:{client[1]}" if client else "-", "method": scope["method"],
                  "path": urllib.parse.quote(scope.get("root_path", "") + scope["path"])[:MAX_LOGGED_PATH],
                  "status": status, "latency_ms": round(latency_ms, 1), "request_id": request_id,
                  "model": scope.get(MODEL_SCOPE_KEY) or "-", "http_version": scope.get("http_version", "1.1")}
        self.log.info('%s - "%s %s HTTP/%s" %d latency_ms=%.1f request_id=%s model=%s', fields["client"],
                      fields["method"], fields["path"], fields["http_version"], status, fields["latency_ms"],
                      request_id, fields["model"], extra=fields)
