"""`/v1/broadcasts` (campaigns) and `/v1/opt-outs`.

A campaign is created from JSON or from a multipart form with a `recipients` CSV file and the
other fields as form fields (`template` and `message` as JSON text). Every route is scoped by
the caller's tenant: another tenant's campaign or number is simply not found.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Final
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from wa_cloud import formdata
from wa_cloud.api.auth import require_tenant
from wa_cloud.api.contacts import phone_number_param, require_own_number
from wa_cloud.api.pagination import cursor_time, cursor_uuid, decode_cursor, limit_of, page
from wa_cloud.asgi import field_digits, parse_uuid, read_object, reject_unknown
from wa_cloud.campaigns import broadcasts
from wa_cloud.campaigns.recipients import (
    RecipientList,
    RecipientsInvalid,
    from_csv,
    from_json,
    normalise_phone,
)
from wa_cloud.canonical import iso
from wa_cloud.db.queries import Q
from wa_cloud.errors import Conflict, NotFound, Unprocessable
from wa_cloud.providers.numbers import request_providers

KB: Final = 1024
MAX_CSV_BYTES: Final = 8 * 1024 * KB  # 100,000 lines of a phone and a few variables
_FIELDS: Final = frozenset({"from", "name", "template", "message", "recipients", "at", "dry_run"})
_FORM_LIMITS: Final = formdata.FormLimits(
    max_body_bytes=MAX_CSV_BYTES + 64 * KB,
    max_file_bytes=MAX_CSV_BYTES,
    file_names=frozenset({"recipients"}),
    max_parts=len(_FIELDS),
    max_field_bytes=16 * KB,
    allowed_names=_FIELDS,
)
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
NOT_YOURS: Final = "No campaign with that id is yours."


async def _read_request(request: Request) -> tuple[dict[str, Any], RecipientList]:
    content_type = request.headers.get("content-type", "")
    try:
        if formdata.is_multipart(content_type):
            parts = await formdata.read_form(request.stream(), content_type, _FORM_LIMITS)
            file = parts.pop("recipients", None)
            if file is None:
                raise Unprocessable("'recipients' (a CSV file) is required.", "missing_field")
            body: dict[str, Any] = {name: part.text for name, part in parts.items()}
            if any("\x00" in value for value in body.values()):
                raise Unprocessable("Form fields cannot hold NUL characters.", "invalid_field")
            for name in ("template", "message"):
                if name in body:
                    try:
                        body[name] = json.loads(body[name])
                    except ValueError:
                        raise Unprocessable(f"'{name}' must be JSON.", "invalid_field") from None
            body["dry_run"] = body.get("dry_run", "").strip().lower() in _TRUE
            # 100,000 lines to parse and normalise: other requests go on meanwhile.
            return body, await asyncio.to_thread(from_csv, file.data)
        body = await read_object(request)
        reject_unknown(body, set(_FIELDS))
        if not isinstance(body.get("dry_run", False), bool):
            raise Unprocessable("'dry_run' must be true or false.", "invalid_field")
        return body, await asyncio.to_thread(from_json, body.get("recipients"))
    except RecipientsInvalid as exc:
        raise Unprocessable(str(exc), "invalid_recipients") from None


async def create_broadcast(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body, recipients = await _read_request(request)
    campaign = await broadcasts.check_campaign(
        state.pool,
        caller.tenant_id,
        body,
        recipients,
        request_providers(state.graph, state.tenant_http, state.box),
        state.template_fetches,
    )
    if body.get("dry_run"):
        return JSONResponse(broadcasts.dry_run_json(campaign))
    async with state.pool.acquire() as conn:
        broadcast_id = await broadcasts.store_campaign(conn, caller.tenant_id, campaign)
        row = await conn.fetchrow(Q.get_broadcast, broadcast_id, caller.tenant_id)
        shown = await broadcasts.broadcast_json(conn, row, skipped=campaign.skipped)
    return JSONResponse(shown, status_code=201)


async def _own_broadcast(request: Request) -> Any:
    state, caller = await require_tenant(request)
    return state, caller, parse_uuid(request.path_params["broadcast_id"])


async def read_broadcast(
    conn: asyncpg.Connection, tenant_id: UUID, broadcast_id: UUID
) -> dict[str, Any]:
    """The tenant's campaign in full (GET /v1/broadcasts/{id}); another's is not found."""
    row = await conn.fetchrow(Q.get_broadcast, broadcast_id, tenant_id)
    if row is None:
        raise NotFound(NOT_YOURS)
    return await broadcasts.broadcast_json(conn, row)


async def get_broadcast(request: Request) -> JSONResponse:
    state, caller, broadcast_id = await _own_broadcast(request)
    async with state.pool.acquire() as conn:
        return JSONResponse(await read_broadcast(conn, caller.tenant_id, broadcast_id))


async def list_broadcasts(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    limit = limit_of(request)
    after, after_id = decode_cursor(request, cursor_time, cursor_uuid) or (None, None)
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(Q.list_broadcasts, caller.tenant_id, after, after_id, limit + 1)
        items = [
            {**shown, "_at": r["created_at"].isoformat()}
            for shown, r in zip(await broadcasts.summaries_json(conn, rows), rows, strict=True)
        ]
    result = page(items, limit, "_at", "id")
    for item in result["data"]:
        del item["_at"]
    return JSONResponse(result)


# Pause, resume, cancel: what each status may become.
MOVES: Final = {
    "pause": ({"scheduled", "running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "cancel": ({"scheduled", "running", "paused"}, "cancelled"),
}


async def move_broadcast(
    pool: asyncpg.Pool, tenant_id: UUID, broadcast_id: UUID, action: str
) -> dict[str, Any]:
    """Pause, resume or cancel the tenant's campaign (`action`, one of MOVES); the campaign as
    it then stands. The caller checks that the tenant is active."""
    if action not in MOVES:
        raise NotFound()
    allowed, target = MOVES[action]
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(Q.lock_broadcast, broadcast_id, tenant_id)
            if row is None:
                raise NotFound(NOT_YOURS)
            if row["status"] not in allowed:
                raise Conflict(
                    f"A {row['status']} campaign cannot be {target}.", "invalid_campaign_state"
                )
            if target == "running":
                await conn.execute(Q.set_broadcast_status, broadcast_id, target, None)
                await conn.execute(Q.notify_campaigns, str(broadcast_id))
            else:
                reason = "paused by the business" if target == "paused" else None
                await conn.execute(Q.stop_broadcasts, [broadcast_id], target, reason, "cancelled")
        return await read_broadcast(conn, tenant_id, broadcast_id)


async def change_broadcast(request: Request) -> JSONResponse:
    state, caller, broadcast_id = await _own_broadcast(request)
    caller.require_active()
    action = request.path_params["action"]
    return JSONResponse(await move_broadcast(state.pool, caller.tenant_id, broadcast_id, action))


async def recipients_csv_response(
    pool: asyncpg.Pool, tenant_id: UUID, broadcast_id: UUID
) -> StreamingResponse:
    """recipients.csv of the tenant's campaign: every line's outcome, read in batches."""
    async with pool.acquire() as conn:
        if await conn.fetchrow(Q.get_broadcast, broadcast_id, tenant_id) is None:
            raise NotFound(NOT_YOURS)

    async def lines() -> AsyncIterator[str]:
        yield ",".join(broadcasts.CSV_COLUMNS) + "\n"
        after = 0
        while True:
            async with pool.acquire() as conn:
                rows = await conn.fetch(Q.broadcast_recipient_rows, broadcast_id, after, 5000)
            if not rows:
                return
            yield broadcasts.recipients_csv_lines(rows)
            after = rows[-1]["line"]

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="recipients-{broadcast_id}.csv"'},
    )


async def recipients_csv(request: Request) -> StreamingResponse:
    state, caller, broadcast_id = await _own_broadcast(request)
    return await recipients_csv_response(state.pool, caller.tenant_id, broadcast_id)


# Opt-outs ----------------------------------------------------------------------------------
def _phone(value: Any) -> str:
    to = normalise_phone(value) if isinstance(value, str) else None
    if to is None:
        raise Unprocessable("'to' must be a phone number with its country code.", "invalid_field")
    return to


def _opt_out_json(row: Any) -> dict[str, Any]:
    return {
        "to": row["recipient"],
        "source": row["source"],
        "detail": row["detail"],
        "created_at": iso(row["created_at"]),
    }


async def list_opt_outs(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    number = phone_number_param(request)
    limit = limit_of(request)
    (after,) = decode_cursor(request, str) or (None,)
    async with state.pool.acquire() as conn:
        await require_own_number(conn, caller.tenant_id, number)
        rows = await conn.fetch(Q.list_opt_outs, number, caller.tenant_id, after, limit + 1)
    return JSONResponse(page([_opt_out_json(r) for r in rows], limit, "to"))


async def add_opt_out(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(body, {"phone_number_id", "to"})
    number = field_digits(body, "phone_number_id")
    to = _phone(body.get("to"))
    async with state.pool.acquire() as conn:
        if await conn.fetchval(Q.sender_number, number, caller.tenant_id) is None:
            raise NotFound("No number with that phone_number_id is yours.")
        added = await conn.fetchval(Q.add_opt_out, number, to, caller.tenant_id, "api", None)
    return JSONResponse({"phone_number_id": number, "to": to}, status_code=201 if added else 200)


async def remove_opt_out(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    number = phone_number_param(request)
    to = _phone(request.path_params["to"])
    async with state.pool.acquire() as conn:
        await require_own_number(conn, caller.tenant_id, number)
        removed = await conn.fetchval(Q.remove_opt_out, number, to, caller.tenant_id)
    if removed is None:
        raise NotFound("That contact has not opted out on that number.")
    return JSONResponse({"phone_number_id": number, "to": to, "removed": True})
