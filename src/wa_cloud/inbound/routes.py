"""The webhook verification handshakes (GET), and the secrets of tenants' own apps.

The POSTs are taken by `receiver.WebhookReceiver` before the router: they do only what must
happen before Meta gets its 200. Parsing, routing to tenants and indexing are the worker's.
"""

from __future__ import annotations

import hmac
import logging
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError, NotFound
from wa_cloud.state import AppState
from wa_cloud.tenants import sealed

logger = logging.getLogger(__name__)

_APP_CACHE_SECONDS = 30.0


class HandshakeRefused(ApiError):
    def __init__(self) -> None:
        super().__init__(403, "verification_failed", "hub.mode or hub.verify_token is wrong.")


def _handshake(request: Request, verify_token: str | None) -> Response:
    params = request.query_params
    given = params.get("hub.verify_token", "")
    if (
        params.get("hub.mode") != "subscribe"
        or not verify_token
        or not hmac.compare_digest(given.encode(), verify_token.encode())
    ):
        raise HandshakeRefused()
    return PlainTextResponse(params.get("hub.challenge", ""))


async def app_secrets(state: AppState, app_id: str) -> tuple[str, str]:
    """(app secret, verify token) of a tenant's own app, cached briefly per process."""
    cached = state.app_cache.get(app_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1], cached[2]
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(Q.app_secret, app_id)
    if row is None:
        raise NotFound("No app with that id is registered.", "unknown_app")
    secret = state.box.open(row["app_secret_enc"], context=sealed.APP_SECRET.context(app_id))
    token = state.box.open(row["verify_token_enc"], context=sealed.APP_VERIFY_TOKEN.context(app_id))
    state.app_cache[app_id] = (time.monotonic() + _APP_CACHE_SECONDS, secret, token)
    return secret, token


async def platform_verify(request: Request) -> Response:
    return _handshake(request, request.state.wa.settings.verify_token)


async def app_verify(request: Request) -> Response:
    state: AppState = request.state.wa
    _, token = await app_secrets(state, request.path_params["app_id"])
    return _handshake(request, token)
