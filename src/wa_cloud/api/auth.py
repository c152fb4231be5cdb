"""Who is calling: the platform admin (one bearer token) or a tenant (its API key)."""

from __future__ import annotations

import hmac
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
    token = _bearer(request)
    expected = state.settings.admin_token or ""
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("The admin token is not valid.")
    return state


async def require_tenant(request: Request) -> tuple[AppState, Caller]:
    state: AppState = request.state.wa
    token = _bearer(request)
    key_hash = hash_key(token)
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(Q.tenant_by_key, key_hash)
    if row is None:
        raise Unauthorized("The API key is not valid.")
    wait = state.key_rates.take(key_hash)
    if wait is not None:
        raise RateLimited(wait)
    return state, Caller(tenant_id=row["id"], active=row["active"])
