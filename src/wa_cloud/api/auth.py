"""Who is calling: the platform admin (one bearer token) or a tenant (its API key)."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from uuid import UUID

from starlette.requests import Request

from wa_cloud.db.queries import Q
from wa_cloud.errors import Forbidden, RateLimited, Unauthorized
from wa_cloud.state import AppState
from wa_cloud.tenants.keys import hash_key


@dataclass(frozen=True, slots=True)
class Caller:
    tenant_id: UUID
    active: bool

    def require_active(self) -> None:
        """Reads stay open to an inactive tenant; changes and sends do not."""
        if not self.active:
            raise Forbidden("This tenant is deactivated.", "tenant_inactive")


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("An 'Authorization: Bearer <token>' header is required.")
    return token.strip()


def require_admin(request: Request) -> AppState:
    state: AppState = request.state.wa
    if not is_admin_token(state, _bearer(request)):
        raise Unauthorized("The admin token is not valid.")
    return state


def is_admin_token(state: AppState, token: str) -> bool:
    expected = state.settings.admin_token or ""
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


# A valid key's tenant is remembered this long in a process: a busy (or rate-limited) key costs
# no query per request. Revoking a key or deactivating a tenant reaches other processes within
# this time; the process that made the change forgets at once.
KEY_CACHE_SECONDS = 5.0
_UNKNOWN_KEYS = b"unknown-key"


async def require_tenant(request: Request) -> tuple[AppState, Caller]:
    state: AppState = request.state.wa
    key_hash = hash_key(_bearer(request))
    caller = await caller_for_key(state, key_hash)
    wait = state.key_rates.take(key_hash, time.monotonic())
    if wait is not None:
        raise RateLimited(wait)
    return state, caller


async def caller_for_key(state: AppState, key_hash: bytes) -> Caller:
    """The tenant whose live key hashes to `key_hash` (the API's bearer, the console's session)."""
    now = time.monotonic()
    cached = state.key_cache.get(key_hash)
    if cached is not None and cached[0] > now:
        caller = cached[1]
    else:
        # Many unknown keys lately (someone guessing): uncached keys are looked up one at a
        # time, so guessing costs the database one query in flight; cached keys are not slowed.
        async with state.failed_lookups.turn(_UNKNOWN_KEYS), state.pool.acquire() as conn:
            row = await conn.fetchrow(Q.tenant_by_key, key_hash)
        if row is None:
            state.failed_lookups.failed(_UNKNOWN_KEYS)
            raise Unauthorized("The API key is not valid.")
        caller = Caller(tenant_id=row["id"], active=row["active"])
        if len(state.key_cache) >= 10_000:
            state.key_cache.clear()
        state.key_cache[key_hash] = (now + KEY_CACHE_SECONDS, caller)
    return caller


def forget_keys(state: AppState) -> None:
    """After a key is revoked or a tenant changed: this process asks the database again."""
    state.key_cache.clear()
