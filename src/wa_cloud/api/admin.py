"""Admin routes (`Authorization: Bearer $WA_ADMIN_TOKEN`): tenants and their first API key."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import forget_keys, require_admin
from wa_cloud.api.pagination import (
    cursor_time,
    cursor_uuid,
    decode_cursor,
    limit_of,
    page,
)
from wa_cloud.asgi import field_bool, field_str, parse_uuid, read_object, reject_unknown
from wa_cloud.db.queries import Q
from wa_cloud.errors import Conflict, NotFound
from wa_cloud.state import AppState
from wa_cloud.tenants import audit
from wa_cloud.tenants.keys import new_key

logger = logging.getLogger(__name__)


def tenant_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "email": row["email"],
        "active": row["active"],
        "credits_balance": row["credits_balance"],
        "created_at": row["created_at"].isoformat(),
    }


async def create_tenant(request: Request) -> JSONResponse:
    state = require_admin(request)
    body = await read_object(request)
    reject_unknown(body, {"name", "email"})
    name, email = tenant_fields(body)
    row, key = await add_tenant(state, name, email)
    return JSONResponse({**tenant_json(row), "api_key": key}, status_code=201)


def tenant_fields(body: Mapping[str, Any]) -> tuple[str, str | None]:
    """A new tenant's name and optional email, checked the same for the API and the console."""
    name = field_str(body, "name", max_length=200)
    email = field_str(body, "email", required=False, max_length=320)
    return name, email


async def add_tenant(state: AppState, name: str, email: str | None) -> tuple[asyncpg.Record, str]:
    """A new tenant and its first API key: the row, and the key in clear this once (only its
    hash is kept)."""
    key, key_hash, prefix = new_key()
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(Q.insert_tenant, name, email)
        await conn.execute(Q.insert_api_key, row["id"], key_hash, prefix)
        await audit.record(conn, "tenant.created", tenant_id=row["id"], actor=audit.ADMIN)
    logger.info("tenant created", extra={"tenant_id": str(row["id"])})
    return row, key


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


async def update_tenant(request: Request) -> JSONResponse:
    """`{"active": false}` stops sends and replies (inbound is still stored); name and email."""
    state = require_admin(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    body = await read_object(request)
    reject_unknown(body, {"active", "name", "email"})
    active = field_bool(body, "active")
    name = field_str(body, "name", required=False, max_length=200)
    email = field_str(body, "email", required=False, max_length=320)
    changes: dict[str, Any] = {k: body[k] for k in ("active", "name", "email") if k in body}
    row = await change_tenant(state, tenant_id, changes, active=active, name=name, email=email)
    return JSONResponse(tenant_json(row))


async def change_tenant(
    state: AppState,
    tenant_id: uuid.UUID,
    changes: Mapping[str, Any],
    *,
    active: bool | None = None,
    name: str | None = None,
    email: str | None = None,
) -> asyncpg.Record:
    """The tenant (de)activated or renamed (None: unchanged), audited with `changes` (what the
    caller asked for); the API and the console both change a tenant this way."""
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(Q.update_tenant, tenant_id, active, name, email)
        if row is None:
            raise NotFound("No tenant with that id.")
        await audit.record(
            conn,
            "tenant.updated",
            tenant_id=tenant_id,
            actor=audit.ADMIN,
            severity="warning" if active is False else "info",
            detail=changes,
        )
    forget_keys(state)  # this process at once; the others within their cache time
    return row


# What DELETE /v1/admin/tenants/{id} removes, child tables first, each counted; the tenant row
# itself goes last and takes anything else that references it by cascade.
TENANT_DELETES: tuple[tuple[str, str], ...] = (
    ("forwards", "delete_tenant_forwards"),
    ("webhooks", "delete_tenant_webhook"),
    ("media", "delete_tenant_media"),
    ("statuses", "delete_tenant_statuses"),
    ("messages", "delete_tenant_messages"),
    ("contacts", "delete_tenant_contacts"),
    ("events", "delete_tenant_events"),
    ("templates", "delete_tenant_templates"),  # before numbers: it looks up their WABAs
    ("numbers", "delete_tenant_numbers"),
    ("apps", "delete_tenant_apps"),
    ("api_keys", "delete_tenant_api_keys"),
    ("audit_events", "delete_tenant_audit"),
)


async def delete_tenant(request: Request) -> JSONResponse:
    """Remove a deactivated tenant and every row and sealed secret it owns, in one transaction.
    Raw deliveries are not the tenant's (one may carry several tenants' numbers): the
    retention job clears them."""
    state = require_admin(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    deleted: dict[str, int] = {}
    async with state.pool.acquire() as conn, conn.transaction():
        active = await conn.fetchval(Q.lock_tenant_for_delete, tenant_id)
        if active is None:
            raise NotFound("No tenant with that id.")
        if active:
            raise Conflict(
                'Deactivate the tenant first (PATCH with {"active": false}).', "tenant_active"
            )
        for kind, query in TENANT_DELETES:
            deleted[kind] = await conn.fetchval(getattr(Q, query), tenant_id)
        await conn.execute(Q.delete_tenant, tenant_id)
        # The tenant's own rows are gone: the record of the deletion is the platform's.
        await audit.record(
            conn,
            "tenant.deleted",
            tenant_id=None,
            actor=audit.ADMIN,
            severity="warning",
            detail={"tenant_id": str(tenant_id), "deleted": deleted},
        )
    logger.info("tenant deleted", extra={"tenant_id": str(tenant_id)})
    forget_keys(state)  # this process at once; the others within their cache time
    return JSONResponse({"id": str(tenant_id), "deleted": deleted})


def _key_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "prefix": row["prefix"],
        "created_at": row["created_at"].isoformat(),
        "revoked_at": None if row["revoked_at"] is None else row["revoked_at"].isoformat(),
    }


async def _tenant_exists(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
    if await conn.fetchrow(Q.get_tenant, tenant_id) is None:
        raise NotFound("No tenant with that id.")


async def create_key(request: Request) -> JSONResponse:
    """Another key for the tenant (rotation: create the new one, move over, revoke the old)."""
    state = require_admin(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    key, key_hash, prefix = new_key()
    async with state.pool.acquire() as conn, conn.transaction():
        await _tenant_exists(conn, tenant_id)
        key_id = await conn.fetchval(Q.insert_api_key, tenant_id, key_hash, prefix)
        await audit.record(
            conn,
            "api_key.created",
            tenant_id=tenant_id,
            actor=audit.ADMIN,
            detail={"key_id": str(key_id), "prefix": prefix},
        )
    return JSONResponse({"id": str(key_id), "prefix": prefix, "api_key": key}, status_code=201)


async def list_keys(request: Request) -> JSONResponse:
    state = require_admin(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    async with state.pool.acquire() as conn:
        await _tenant_exists(conn, tenant_id)
        rows = await conn.fetch(Q.list_keys, tenant_id)
    return JSONResponse({"data": [_key_json(r) for r in rows], "next": None})


async def revoke_key(request: Request) -> JSONResponse:
    state = require_admin(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    key_id = parse_uuid(request.path_params["key_id"])
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(Q.revoke_key, key_id, tenant_id)
        if row is None:
            raise NotFound("No key with that id for that tenant.")
        await audit.record(
            conn,
            "api_key.revoked",
            tenant_id=tenant_id,
            actor=audit.ADMIN,
            severity="warning",
            detail={"key_id": str(key_id), "prefix": row["prefix"]},
        )
    forget_keys(state)  # this process at once; the others within their cache time
    return JSONResponse(_key_json(row))
