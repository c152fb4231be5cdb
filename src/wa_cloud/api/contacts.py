"""`GET /v1/contacts` and a contact's messages: what a tenant's numbers received and sent.

Scoped by the caller's tenant and by a number that is (or was) theirs: another tenant's ids are
simply not found.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_tenant
from wa_cloud.api.pagination import (
    cursor_id,
    cursor_time,
    cursor_uuid,
    decode_cursor,
    limit_of,
    page,
)
from wa_cloud.asgi import DIGITS
from wa_cloud.canonical import iso
from wa_cloud.db.queries import Q
from wa_cloud.errors import BadRequest, NotFound
from wa_cloud.window import window_state


def _phone_number_id(request: Request) -> str:
    value = request.query_params.get("phone_number_id")
    if not value:
        raise BadRequest("The 'phone_number_id' query parameter is required.", "missing_field")
    if not DIGITS.fullmatch(value):
        raise BadRequest("'phone_number_id' must be digits only.", "invalid_field")
    return value


async def require_own_number(conn: asyncpg.Connection, tenant_id: UUID, number: str) -> None:
    """404 unless `number` is (or was: its history stays) one of the tenant's numbers. An empty
    answer for someone else's number would still say "we have no contacts there"."""
    if await conn.fetchval(Q.tenant_has_number, number, tenant_id) is None:
        raise NotFound("No number with that phone_number_id is yours.")


async def list_contacts(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    phone_number_id = _phone_number_id(request)
    limit = limit_of(request)
    (after,) = decode_cursor(request, cursor_id) or (None,)
    async with state.pool.acquire() as conn:
        await require_own_number(conn, caller.tenant_id, phone_number_id)
        rows = await conn.fetch(
            Q.list_contacts, caller.tenant_id, phone_number_id, after, limit + 1
        )
    items = []
    for r in rows:
        window = window_state(r["last_inbound_at"], r["window_closed_at"])
        items.append(
            {
                "id": r["id"],
                "wa_id": r["wa_id"],
                "user_id": r["user_id"],
                "name": r["name"],
                "username": r["username"],
                "last_inbound_at": iso(r["last_inbound_at"]),
                "window_open": window.open,
                "window_expires_at": iso(window.expires_at),
                "bot_paused": r["bot_paused"],
            }
        )
    result = page(items, limit, "id")
    for item in result["data"]:
        del item["id"]
    return JSONResponse(result)


async def contact_messages(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    phone_number_id = _phone_number_id(request)
    limit = limit_of(request)
    after, after_id = decode_cursor(request, cursor_time, cursor_uuid) or (None, None)
    async with state.pool.acquire() as conn:
        await require_own_number(conn, caller.tenant_id, phone_number_id)
        contact_id = await conn.fetchval(
            Q.find_tenant_contact,
            caller.tenant_id,
            phone_number_id,
            request.path_params["contact"],
        )
        if contact_id is None:
            raise NotFound("No contact with that wa_id or user_id on that number.")
        rows = await conn.fetch(
            Q.contact_messages,
            caller.tenant_id,
            contact_id,
            after,
            after_id,
            limit + 1,
        )
    items = [
        {
            "id": str(r["id"]),
            "wamid": r["wamid"],
            "direction": r["direction"],
            "type": r["type"],
            "text": r["text"],
            "status": r["status"],
            "created_at": r["created_at"].isoformat(),
            "at": r["at"].isoformat(),
        }
        for r in rows
    ]
    result = page(items, limit, "at", "id")
    for item in result["data"]:
        del item["at"]
    return JSONResponse(result)
