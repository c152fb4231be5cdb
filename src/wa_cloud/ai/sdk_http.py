"""The model SDKs' HTTP through our own clients.

The `openai` and `google-genai` SDKs speak `httpx2`, a separate package from the `httpx` the
rest of the service (and the URL guard) is built on. `HttpxBridge` is an `httpx2` transport that
sends each request through one of our `httpx` clients: a tenant's own model URL goes through
the URL guard's client (every connection checked, no private address reachable), exactly as
media by URL and forwarding do, instead of a second guard written for `httpx2`.
"""

from __future__ import annotations

from typing import Final

import httpx
import httpx2

from wa_cloud.urlguard import UrlNotAllowed

# Model answers are small; a voice reply is some hundred KB. Anything past this is refused.
MAX_RESPONSE_BYTES: Final = 25 * 1024 * 1024


class ResponseTooLarge(httpx2.TransportError):
    pass


class HttpxBridge(httpx2.AsyncBaseTransport):
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout") or {}
        outgoing = self._client.build_request(
            request.method,
            str(request.url),
            headers=list(request.headers.multi_items()),
            content=await request.aread(),
            timeout=httpx.Timeout(
                connect=timeout.get("connect"),
                read=timeout.get("read"),
                write=timeout.get("write"),
                pool=timeout.get("pool"),
            )
            if timeout
            else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            response = await self._client.send(outgoing, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise ResponseTooLarge("the model's response is too large", request=request)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise httpx2.TimeoutException(type(exc).__name__, request=request) from exc
        except (httpx.HTTPError, UrlNotAllowed) as exc:
            raise httpx2.ConnectError(type(exc).__name__, request=request) from exc
        return httpx2.Response(
            response.status_code,
            headers=list(response.headers.multi_items()),
            content=bytes(body),
            request=request,
        )

    async def aclose(self) -> None:
        """The client is shared and closed by its owner."""


def sdk_client(client: httpx.AsyncClient) -> httpx2.AsyncClient:
    """An `httpx2` client for an SDK that sends through `client`."""
    return httpx2.AsyncClient(transport=HttpxBridge(client), timeout=None)
