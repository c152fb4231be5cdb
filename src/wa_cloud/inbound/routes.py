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
from wa_cloud.providers.websession import secret_hash
from wa_cloud.state import AppState
from wa_cloud.tenants import sealed

logger = logging.getLogger(__name__)

_APP_CACHE_SECONDS = 30.0
_UNKNOWN_APP_SECONDS = 10.0
_APP_CACHE_ENTRIES = 10_000
_UNKNOWN_APPS = b"unknown-app"


class UnknownApp(NotFound):
    def __init__(self) -> None:
        super().__init__("No app with that id is registered.", "unknown_app")


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
    """(app secret, verify token) of a tenant's own app, cached briefly per process.

    An unknown id is cached too (for less time): a flood of webhooks naming made-up app ids
    costs no database query each, and an app registered meanwhile is forgotten from the cache
    by the process that registered it (others see it within `_UNKNOWN_APP_SECONDS`)."""
    now = time.monotonic()
    cached = state.app_cache.get(app_id)
    if cached is not None and cached[0] > now:
        return cached[1], cached[2]
    if state.unknown_apps.get(app_id, 0.0) > now:
        raise UnknownApp()
    # A flood of made-up app ids: uncached ids are looked up one at a time (the ingest pool is
    # Meta's deliveries'), and a registered app's webhook is answered in its turn.
    async with state.failed_lookups.turn(_UNKNOWN_APPS), state.ingest_pool.acquire() as conn:
        row = await conn.fetchrow(Q.app_secret, app_id)
    if row is None:
        state.failed_lookups.failed(_UNKNOWN_APPS)
        if len(state.unknown_apps) >= _APP_CACHE_ENTRIES:
            state.unknown_apps.clear()  # made-up ids must not grow the process
        state.unknown_apps[app_id] = now + _UNKNOWN_APP_SECONDS
        raise UnknownApp()
    secret = state.box.open(row["app_secret_enc"], context=sealed.APP_SECRET.context(app_id))
    token = state.box.open(row["verify_token_enc"], context=sealed.APP_VERIFY_TOKEN.context(app_id))
    state.app_cache[app_id] = (now + _APP_CACHE_SECONDS, secret, token)
    return secret, token


_UNKNOWN_SESSIONS = b"unknown-session"


async def gateway_secret_matches(state: AppState, phone_number_id: str, given: bytes) -> bool:
    """Whether `given` is the secret we set on this web-session number's gateway instance.

    The hashes are cached briefly per process, a number without a session too. A mismatch with
    a cached hash is read again once (the number may have been registered again elsewhere,
    with a new secret), one such read at a time past the failed-lookup rate."""
    now = time.monotonic()
    digest = secret_hash(given.decode("latin-1"))
    cached = state.session_secrets.get(phone_number_id)
    if cached is not None and cached[0] > now:
        if cached[1] is None:
            return False  # no web-session number by that id, a moment ago
        if hmac.compare_digest(cached[1], digest):
            return True
    async with state.failed_lookups.turn(_UNKNOWN_SESSIONS), state.ingest_pool.acquire() as conn:
        stored: bytes | None = await conn.fetchval(Q.gateway_secret, phone_number_id)
    if len(state.session_secrets) >= _APP_CACHE_ENTRIES:
        state.session_secrets.clear()  # made-up numbers must not grow the process
    ttl = _APP_CACHE_SECONDS if stored is not None else _UNKNOWN_APP_SECONDS
    state.session_secrets[phone_number_id] = (now + ttl, stored)
    if stored is not None and hmac.compare_digest(stored, digest):
        return True
    state.failed_lookups.failed(_UNKNOWN_SESSIONS)
    return False


def forget_app(state: AppState, app_id: str) -> None:
    """Drop this process's cached secrets (or absence) of `app_id` after a change."""
    state.app_cache.pop(app_id, None)
    state.unknown_apps.pop(app_id, None)


async def platform_verify(request: Request) -> Response:
    return _handshake(request, request.state.wa.settings.verify_token)


async def app_verify(request: Request) -> Response:
    state: AppState = request.state.wa
    try:
        _, token = await app_secrets(state, request.path_params["app_id"])
    except UnknownApp:
        raise HandshakeRefused() from None  # as for a wrong token: which apps we serve is ours
    return _handshake(request, token)
