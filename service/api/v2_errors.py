"""Errors under /v2 in the Open Inference Protocol's shape: ``{"error": "<what went wrong and what to fix>"}``.

The rest of the service answers errors as ``{"detail": ...}``: its exception handlers, the 413 of the body
limit, the 429 of admission control, FastAPI's 404 and 405. :class:`ProtocolErrorMiddleware` rewrites such an
answer on a /v2 path into the protocol's object, keeping its status and headers, so that every refusal a
v2 client can meet reads the same and the shared handlers stay as they are.
"""
from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v2"


def protocol_error(body: bytes) -> bytes:
    """``{"error": detail}`` from a ``{"detail": ...}`` JSON body (a non-string detail becomes its JSON text);
    any other body is kept."""
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        return body
    return json.dumps({"error": detail if isinstance(detail, str) else json.dumps(detail)}).encode()


class ProtocolErrorMiddleware:
    """Rewrite the JSON body of 4xx and 5xx answers to paths under /v2 (see the module docstring)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            return await self.app(scope, receive, send)
        start: Message | None = None
        parts: list[bytes] = []

        async def rewriting_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if message["status"] >= 400 and headers.get(b"content-type", b"").startswith(b"application/json"):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                parts.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = protocol_error(b"".join(parts))
                headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                message = {"type": "http.response.body", "body": body}
            await send(message)

        await self.app(scope, receive, rewriting_send)
