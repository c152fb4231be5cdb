"""Admin routes (`Authorization: Bearer $WA_ADMIN_TOKEN`): tenants and their first API key."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_admin
from wa_cloud.api.body import field_str, read_object, reject_unknown
from wa_cloud.api.pages import cursor_time, cursor_uuid, decode_cursor, limit_of, page
from wa_cloud.db.queries import Q
from wa_cloud.errors import NotFound
from wa_cloud.tenants.keys import new_key

logger = logging.getLogger(__name__)


def tenant_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "email": row["email"],
        "active": row["active"],
        "created_at": row["created_at"].isoformat(),
    }


async def create_tenant(request: Request) -> JSONResponse:
    state = require_admin(request)
    body = await read_object(request)
    reject_unknown(body, {"name", "email"})
    name = field_str(body, "name", max_length=200)
    email = field_str(body, "email", required=False, max_length=320)
    key, key_hash, prefix = new_key()
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(Q.insert_tenant, name, email)
        await conn.execute(Q.insert_api_key, row["id"], key_hash, prefix)
    logger.info("tenant created", extra={"tenant_id": str(row["id"])})
    return JSONResponse({**tenant_json(row), "api_key": key}, status_code=201)


async def list_tenants(request: Request) -> JSONResponse:
    state = require_admin(request)
    limit = limit_of(request)
    after, after_id = decode_cursor(request, cursor_time, cursor_uuid) or (None, None)
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(Q.list_tenants, after, after_id, limit + 1)
    items = [tenant_json(r) for r in rows]
    return JSONResponse(page(items, limit, "created_at", "id"))


async def get_tenant(request: Request) -> JSONResponse:
    state = require_admin(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(Q.get_tenant, tenant_id)
    if row is None:
        raise NotFound("No tenant with that id.")
    return JSONResponse(tenant_json(row))


def parse_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such resource.") from None
