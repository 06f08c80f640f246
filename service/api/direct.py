"""``DirectRoute``: a route that FastAPI documents like any other but that answers without FastAPI's request
handling, for a hot path whose endpoint reads and checks the request itself (``POST /v2/models/{name}/infer``).

FastAPI builds the route's OpenAPI operation from the endpoint's signature as usual (its path parameters,
``responses``, ``openapi_extra``). A request skips the dependency solving, parameter validation and response
model of an ``APIRoute``: the handler runs the app's unknown-query check (``reject_unknown_query``), then
awaits ``endpoint(request, **path_params)`` (path parameters as the path's strings) and sends the
``Response`` it returns. Errors it raises go to the app's exception handlers as from any route.

Added to the app's own router ahead of the included routers (``add_api_route(..., route_class_override=
DirectRoute)``), its path is matched first, by one regular expression, instead of through the nested routers.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.routing import APIRoute

from apudae.service.api.deps import reject_unknown_query


class DirectRoute(APIRoute):
    """See the module docstring."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            await reject_unknown_query(request)
            return await endpoint(request, **request.path_params)

        return handle

