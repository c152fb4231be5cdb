"""The webhook POST path as plain ASGI: the lean path Meta's deliveries take.

A delivery needs four things before its 200: a size bound, the signature check, the durable
commit and the answer. Going through the framework's router, request object, state wrapper and
exception layers costs more CPU than the other four together, so `WebhookReceiver` sits in
front of the Starlette app and takes `POST /webhook` and `POST /webhook/apps/{app_id}` itself;
everything else (including the GET handshakes) goes on to Starlette.
"""

from __future__ import annotations

import json

from wa_cloud.asgi import ASGIApp, Receive, Scope, Send, read_capped
from wa_cloud.config import MAX_WEBHOOK_BYTES
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.errors import ApiError, DatabaseUnavailable, Forbidden
from wa_cloud.inbound.routes import UnknownApp, app_secrets, gateway_secret_matches
from wa_cloud.inbound.signature import SignatureInvalid, SignatureMissing, verify_off_loop
from wa_cloud.providers.websession import SECRET_HEADER
from wa_cloud.state import AppState

_APPS_PREFIX = "/webhook/apps/"
_SESSIONS_PREFIX = "/webhook/websession/"
_GATEWAY_SECRET = SECRET_HEADER.encode()
_SIGNATURE = b"x-hub-signature-256"
_BODY_READ = "wa_cloud.body_read"  # set in the scope once the whole body is in
# Above this, a webhook body is "large": read only within the process's byte budget.
LARGE_WEBHOOK_BYTES = 256 * 1024
_OK_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
_OK_BODY = {"type": "http.response.body", "body": b""}


async def _error(send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        # Refused before the body was read: closing the connection spares reading (and
        # parsing) the rest of a body nobody will look at, which a flood of them would cost.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _headers(scope: Scope, credential: bytes) -> tuple[bytes | None, bytes | None]:
    """The body's declared length and the header that authenticates it."""
    length = found = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == credential:
            found = value
    return length, found


class WebhookReceiver:
    """Pure-ASGI front: webhook POSTs here, the rest to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        gateway_number = None
        if path == "/webhook":
            app_id = None
        elif path.startswith(_SESSIONS_PREFIX):
            app_id, gateway_number = None, path[len(_SESSIONS_PREFIX) :]
        elif path.startswith(_APPS_PREFIX) and "/" not in path[len(_APPS_PREFIX) :]:
            app_id = path[len(_APPS_PREFIX) :]
            if not app_id.isdigit() or not app_id.isascii():  # Meta app ids are digits
                await _error(send, 404, "unknown_app", "No app with that id is registered.")
                return
        else:
            await self.app(scope, receive, send)
            return
        state: AppState = scope["state"]["wa"]
        try:
            if gateway_number is None:
                await self._receive(state, scope, receive, app_id)
            else:
                await self._receive_gateway(state, scope, receive, gateway_number)
        except ApiError as exc:
            state.metrics.inc("wa_webhook_rejected_total", reason=exc.code)
            unread = _BODY_READ not in scope
            await _error(send, exc.status, exc.code, exc.message, close=unread)
            return
        except (DatabaseUnavailable, *DATABASE_ERRORS):
            state.metrics.inc("wa_webhook_rejected_total", reason="database_unavailable")
            await _error(send, 503, "database_unavailable", "The database is not reachable; retry.")
            return
        await send(_OK_START)
        await send(_OK_BODY)

    @staticmethod
    async def _receive_gateway(
        state: AppState, scope: Scope, receive: Receive, number: str
    ) -> None:
        """A web-session gateway's event: stored (source `websession:<number>`) when it
        carries the secret we set on that number's instance; 403 otherwise, nothing stored."""
        length, given = _headers(scope, _GATEWAY_SECRET)
        if not (number.isascii() and number.isdigit() and given):
            raise _GatewayRefused()
        if not await gateway_secret_matches(state, number, given):
            raise _GatewayRefused()
        body = await read_capped(receive, length, MAX_WEBHOOK_BYTES)
        scope[_BODY_READ] = True
        await state.deliveries.submit((f"websession:{number}", body))
        state.metrics.inc("wa_webhook_deliveries_received_total", source="websession")

    @staticmethod
    async def _receive(state: AppState, scope: Scope, receive: Receive, app_id: str | None) -> None:
        length, signature = _headers(scope, _SIGNATURE)
        if app_id is None:
            source, secret = "platform", state.settings.app_secret or ""
        else:
            source = f"app:{app_id}"
            try:
                secret, _ = await app_secrets(state, app_id)
            except UnknownApp:
                # Answered as a wrong signature is: whether an app id is registered here (which
                # businesses are customers) is not told to whoever asks.
                raise SignatureInvalid() if signature else SignatureMissing() from None
        declared = int(length) if length is not None and length.isdigit() else 0
        if (
            declared > LARGE_WEBHOOK_BYTES
            and state.large_webhooks.take(b"", cost=declared) is not None
        ):
            # Meta's deliveries are a few KB; a stream of multi-MB bodies (no secret needed to
            # send them) is refused before it is read, past the process's budget. Meta retries
            # a 503, and a genuine large delivery gets through once the flood has passed.
            raise ApiError(503, "busy", "Too many large webhook bodies right now; retry later.")
        body = await read_capped(receive, length, MAX_WEBHOOK_BYTES)
        scope[_BODY_READ] = True
        header = None if signature is None else signature.decode("latin-1")
        await verify_off_loop(
            body, header, secret, state.signature_fallbacks, state.signature_fallback_turn
        )
        await state.deliveries.submit((source, body))
        state.metrics.inc("wa_webhook_deliveries_received_total", source=source.split(":", 1)[0])


class _GatewayRefused(Forbidden):
    def __init__(self) -> None:
        # One answer for an unknown number and a wrong secret: which numbers are web sessions
        # here is not told to whoever asks.
        super().__init__("The gateway secret is missing or wrong.", "invalid_gateway_secret")
