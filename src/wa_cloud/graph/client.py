"""The Graph API client: the process's shared HTTP clients, the token given per call.

Message sends, the hot path (a number may send 1,000 a second), go over aiohttp: measured here,
httpx's connection pool cost 1.3 to 3.5 ms of CPU per request against aiohttp's 0.25 to 0.4 ms,
so a worker on httpx could not keep a fast number's pace. Every other call (media, templates,
onboarding) uses httpx. Every lower-level failure of either is translated here, at one boundary,
into the `GraphError` tree. A send whose request went out but whose answer never came is
`SendOutcomeUnknown`, not a retryable error: Meta may have accepted it, and sending again could
deliver it twice.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx

from wa_cloud.backoff import retry_after
from wa_cloud.graph.errors import (
    GraphUnavailable,
    PermanentGraphError,
    SendOutcomeUnknown,
    error_from_response,
)
from wa_cloud.graph.retry import call_with_retries


def new_send_session(timeout_seconds: float) -> aiohttp.ClientSession:
    """The process's one session for message sends (create it inside the running loop)."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=5.0),
        connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
        raise_for_status=False,
    )


def new_http_client(timeout_seconds: float) -> httpx.AsyncClient:
    """The process's one HTTP client: explicit timeouts, and room for a fast number's sends."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds, connect=5.0),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=128),
    )


def _decode(status: int, content: bytes, retry_after_header: str | None, is_send: bool) -> Any:
    """Meta's answer: the JSON document of a success, or the error it stands for."""
    try:
        document = json.loads(content) if content else None
    except ValueError:
        document = None
    if 200 <= status < 300:
        if document is None:
            message = f"Graph API answered HTTP {status} with a non-JSON body"
            raise (SendOutcomeUnknown if is_send else GraphUnavailable)(message)
        return document
    has_meta_error = isinstance(document, dict) and isinstance(document.get("error"), dict)
    if is_send and status >= 500 and not has_meta_error:
        # A proxy's or edge's 5xx (502, 504 ...) says nothing of whether Meta took the message:
        # sending it again could deliver it twice. Meta's own error object says it did not.
        raise SendOutcomeUnknown(f"Graph API answered HTTP {status} without Meta's error object")
    raise error_from_response(status, document, retry_after(retry_after_header))


class GraphClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        sends: aiohttp.ClientSession,
        base_url: str,
        version: str,
    ) -> None:
        self._http = http
        self._sends = sends
        self._root = f"{base_url.rstrip('/')}/{version}"

    def __repr__(self) -> str:
        return f"GraphClient({self._root!r})"

    async def request(
        self,
        method: str,
        path: str,
        token: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        files: Any = None,
        data: Mapping[str, str] | None = None,
        is_send: bool = False,
    ) -> Any:
        """One call, no retries. `is_send` marks a call that must not be repeated blindly."""
        # Always under the configured Graph base: the token is never sent anywhere else from
        # here (an id that is really a URL stays a path segment of graph's own host).
        url = f"{self._root}/{path.lstrip('/')}"
        try:
            response = await self._http.request(
                method,
                url,
                json=json,
                params=params,
                files=files,
                data=data,
                headers={"authorization": f"Bearer {token}"} if token else None,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached Meta: safe to try again.
            raise GraphUnavailable(f"cannot reach the Graph API: {type(exc).__name__}") from exc
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            message = f"no answer from the Graph API: {type(exc).__name__}"
            if is_send:
                raise SendOutcomeUnknown(message) from exc
            raise GraphUnavailable(message) from exc
        except httpx.HTTPError as exc:
            raise GraphUnavailable(f"Graph API request failed: {type(exc).__name__}") from exc
        return _decode(
            response.status_code, response.content, response.headers.get("retry-after"), is_send
        )

    # Messages ----------------------------------------------------------------------------
    async def send_message(
        self, phone_number_id: str, token: str, payload: Mapping[str, Any]
    ) -> str:
        """POST the message; return Meta's wamid."""
        url = f"{self._root}/{phone_number_id}/messages"
        try:
            async with self._sends.post(
                url, json=payload, headers={"authorization": f"Bearer {token}"}
            ) as response:
                body = await response.read()
                status, retry_after = response.status, response.headers.get("retry-after")
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Nothing reached Meta: safe to try again.
            raise GraphUnavailable(f"cannot reach the Graph API: {type(exc).__name__}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            # The request may have gone out: Meta may have the message.
            raise SendOutcomeUnknown(f"no answer from the Graph API: {type(exc).__name__}") from exc
        document = _decode(status, body, retry_after, is_send=True)
        try:
            return str(document["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise SendOutcomeUnknown("Graph API accepted the send without a message id") from None

    async def mark_read(
        self, phone_number_id: str, token: str, wamid: str, *, typing: bool = False
    ) -> None:
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": wamid,
        }
        if typing:
            payload["typing_indicator"] = {"type": "text"}
        await call_with_retries(
            lambda: self.request("POST", f"{phone_number_id}/messages", token, json=payload)
        )

    # Media -------------------------------------------------------------------------------
    async def upload_media(
        self, phone_number_id: str, token: str, content: bytes, mime_type: str, filename: str
    ) -> str:
        document = await call_with_retries(
            lambda: self.request(
                "POST",
                f"{phone_number_id}/media",
                token,
                files={"file": (filename, content, mime_type)},
                data={"messaging_product": "whatsapp", "type": mime_type},
            )
        )
        return str(document["id"])

    async def media_info(self, media_id: str, token: str) -> dict[str, Any]:
        return await call_with_retries(lambda: self.request("GET", media_id, token))

    async def download(self, url: str, token: str, *, max_bytes: int) -> bytes:
        """Fetch a media URL (valid 5 minutes, bearer token required), refusing oversize."""

        async def fetch() -> bytes:
            try:
                async with self._http.stream(
                    "GET", url, headers={"authorization": f"Bearer {token}"}
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        _decode(
                            response.status_code,
                            response.content,
                            response.headers.get("retry-after"),
                            is_send=False,
                        )
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise PermanentGraphError(f"media is larger than {max_bytes} bytes")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                raise GraphUnavailable(f"media download failed: {type(exc).__name__}") from exc

        return await call_with_retries(fetch)

    # Numbers, WABA, templates, onboarding --------------------------------------------------
    async def phone_number(self, phone_number_id: str, token: str, fields: str) -> dict[str, Any]:
        return await call_with_retries(
            lambda: self.request("GET", phone_number_id, token, params={"fields": fields})
        )

    async def waba_numbers(self, waba_id: str, token: str) -> list[dict[str, Any]]:
        document = await call_with_retries(
            lambda: self.request("GET", f"{waba_id}/phone_numbers", token)
        )
        return list(document.get("data") or [])

    async def subscribe_app(self, waba_id: str, token: str) -> None:
        await call_with_retries(lambda: self.request("POST", f"{waba_id}/subscribed_apps", token))

    async def register(self, phone_number_id: str, token: str, pin: str) -> None:
        payload = {"messaging_product": "whatsapp", "pin": pin}
        await call_with_retries(
            lambda: self.request("POST", f"{phone_number_id}/register", token, json=payload)
        )

    async def deregister(self, phone_number_id: str, token: str) -> None:
        await call_with_retries(
            lambda: self.request("POST", f"{phone_number_id}/deregister", token)
        )

    async def templates(self, waba_id: str, token: str) -> list[dict[str, Any]]:
        """Every template of the WABA, following `paging.cursors.after`."""
        found: list[dict[str, Any]] = []
        params = {"limit": "100"}
        while True:
            page = await call_with_retries(
                functools.partial(
                    self.request, "GET", f"{waba_id}/message_templates", token, params=dict(params)
                )
            )
            found.extend(page.get("data") or [])
            after = ((page.get("paging") or {}).get("cursors") or {}).get("after")
            if not after or not page.get("data") or not (page.get("paging") or {}).get("next"):
                return found
            params = {"limit": "100", "after": str(after)}

    async def create_template(
        self, waba_id: str, token: str, template: Mapping[str, Any]
    ) -> dict[str, Any]:
        """`{"id", "status", "category"}`. Not retried: a create Meta took but did not answer
        would be a second template (the next diff shows it instead)."""
        document = await self.request(
            "POST", f"{waba_id}/message_templates", token, json=dict(template)
        )
        return dict(document) if isinstance(document, Mapping) else {}

    async def edit_template(self, template_id: str, token: str, change: Mapping[str, Any]) -> None:
        await self.request("POST", template_id, token, json=dict(change))

    async def delete_template(self, waba_id: str, token: str, name: str, hsm_id: str) -> None:
        params = {"name": name, "hsm_id": hsm_id}
        await call_with_retries(
            lambda: self.request("DELETE", f"{waba_id}/message_templates", token, params=params)
        )

    async def app(self, app_id: str, app_token: str) -> dict[str, Any]:
        """The app's node, read with its app access token (`{app_id}|{app_secret}`): Meta
        answers only when the secret is the app's, which proves who registers it."""
        document = await call_with_retries(lambda: self.request("GET", app_id, app_token))
        return dict(document) if isinstance(document, Mapping) else {}

    async def exchange_code(self, app_id: str, app_secret: str, code: str) -> str:
        params = {"client_id": app_id, "client_secret": app_secret, "code": code}
        document = await call_with_retries(
            lambda: self.request("GET", "oauth/access_token", "", params=params)
        )
        token = document.get("access_token") if isinstance(document, Mapping) else None
        if not isinstance(token, str) or not token:
            raise PermanentGraphError("the code exchange returned no access_token")
        return token
