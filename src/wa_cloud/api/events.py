"""The audit log: `GET /v1/events` (a tenant's own rows) and `GET /v1/admin/events` (the whole
platform's, or one tenant's with `?tenant_id=`)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_admin, require_tenant
from wa_cloud.api.pagination import cursor_id, decode_cursor, limit_of, page
from wa_cloud.asgi import parse_uuid
from wa_cloud.db.queries import Q
from wa_cloud.state import AppState


async def list_events(request: Request) -> JSONResponse:
    """This tenant's own rows of the audit log."""
    state, caller = await require_tenant(request)
    return await list_audit(state, request, caller.tenant_id)


async def list_audit(
    state: AppState, request: Request, tenant_id: uuid.UUID | None
) -> JSONResponse:
    limit = limit_of(request)
    (before,) = decode_cursor(request, cursor_id) or (None,)
    rows = await audit_rows(state, tenant_id, before, limit + 1)
    return JSONResponse(page([audit_json(r) for r in rows], limit, "id"))


async def audit_rows(
    state: AppState,
    tenant_id: uuid.UUID | None,
    before: int | None,
    limit: int,
    severity: str | None = None,
) -> list[asyncpg.Record]:
    """Rows of the audit log, newest first, older than id `before`: one tenant's or (None) the
    platform's, of one severity (audit.SEVERITIES) or all; the API and the console read it so."""
    async with state.pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            Q.list_audit, tenant_id, before, limit, severity
        )
    return rows


async def list_all_events(request: Request) -> JSONResponse:
    """The audit log of the whole platform, or of one tenant with `?tenant_id=`."""
    state = require_admin(request)
    raw = request.query_params.get("tenant_id")
    return await list_audit(state, request, parse_uuid(raw) if raw else None)


def audit_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": row["created_at"].isoformat(),
        "tenant_id": None if row["tenant_id"] is None else str(row["tenant_id"]),
        "actor": row["actor"],
        "severity": row["severity"],
        "action": row["action"],
        "detail": row["detail"],
    }
