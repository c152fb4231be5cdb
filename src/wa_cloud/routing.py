"""One route per path with a handler per method: the API's and the console's routes alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wa_cloud.errors import NotFound

Endpoint = Callable[[Request], Awaitable[Response]]


def resource(path: str, **handlers: Endpoint) -> Route:
    """One route per path with a handler per method, so a 405 names every allowed method."""

    async def endpoint(request: Request) -> Response:
        if any("\x00" in str(v) for v in request.path_params.values()):
            raise NotFound()  # no id holds a NUL, and PostgreSQL text cannot even compare it
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, endpoint, methods=list(handlers), name=path)
