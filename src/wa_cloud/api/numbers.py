"""Tenant routes (`Authorization: Bearer <api_key>`): numbers, apps and what was ingested.

Every query is scoped by the caller's tenant id: another tenant's ids are simply not found.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.admin import list_audit
from wa_cloud.api.auth import require_tenant
from wa_cloud.api.pagination import (
    cursor_id,
    cursor_time,
    cursor_uuid,
    decode_cursor,
    limit_of,
    page,
)
from wa_cloud.asgi import field_bool, field_int, field_str, read_object, reject_unknown
from wa_cloud.db.queries import Q
from wa_cloud.errors import BadRequest, Conflict, NotFound, Unprocessable
from wa_cloud.forwarding.events import NUMBER_UPDATED, enqueue_forward
from wa_cloud.graph.errors import GraphError
from wa_cloud.inbound.index import source_of
from wa_cloud.providers.cloud import cloud_provider
from wa_cloud.secretbox import SecretUnreadable
from wa_cloud.state import AppState
from wa_cloud.tenants import audit, sealed
from wa_cloud.tenants.onboarding import subscribe_and_register, verify_number
from wa_cloud.window import window_state

logger = logging.getLogger(__name__)

DIGITS = re.compile(r"[0-9]{5,20}")
PIN = re.compile(r"[0-9]{6}")


def number_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "phone_number_id": row["phone_number_id"],
        "waba_id": row["waba_id"],
        "display_phone_number": row["display_phone_number"],
        "verified_name": row["verified_name"],
        "quality_rating": row["quality_rating"],
        "name_status": row["name_status"],
        "code_verification_status": row["code_verification_status"],
        "throughput_level": row["throughput_level"],
        "registered": row["registered"],
        "app_id": row["app_id"],
        "provider": row["provider"],
        "bot_enabled": row["bot_enabled"],
        "throughput_mps": row["throughput_mps"],
        "created_at": row["created_at"].isoformat(),
    }


# Messages a second Meta allows per throughput level: 80 by default, 1,000 once Meta raises it.
META_THROUGHPUT = {"HIGH": 1000}
DEFAULT_META_THROUGHPUT = 80


def meta_throughput(level: str | None) -> int:
    return META_THROUGHPUT.get((level or "").upper(), DEFAULT_META_THROUGHPUT)


def digits(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
        body[name] = value
    text = field_str(body, name, required=required, max_length=20)
    if text is not None and not DIGITS.fullmatch(text):
        raise Unprocessable(f"'{name}' must be digits only.", "invalid_field")
    return text


def pin_of(body: dict[str, Any]) -> str | None:
    """The optional two-step verification PIN: six ASCII digits."""
    pin = field_str(body, "pin", required=False, max_length=6)
    if pin is not None and not PIN.fullmatch(pin):
        raise Unprocessable("'pin' must be six digits.", "invalid_field")
    return pin


async def create_number(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(
        body,
        {
            "phone_number_id",
            "waba_id",
            "access_token",
            "display_phone_number",
            "app_id",
            "pin",
            "provider",
        },
    )
    phone_number_id = digits(body, "phone_number_id")
    waba_id = digits(body, "waba_id")
    token = field_str(body, "access_token", max_length=4096)
    if token is not None and not (token.isascii() and token.isprintable()):
        raise Unprocessable("'access_token' is not a Meta access token.", "invalid_field")
    display = digits(body, "display_phone_number", required=False)
    app_id = digits(body, "app_id", required=False)
    pin = pin_of(body)
    provider = field_str(body, "provider", required=False, default="cloud")
    if provider != "cloud":
        raise Unprocessable("'provider' must be 'cloud'.", "invalid_field")
    assert phone_number_id is not None and waba_id is not None and token is not None
    row = await register_number(
        state,
        caller.tenant_id,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        token=token,
        pin=pin,
        app_id=app_id,
        display=display,
    )
    return JSONResponse(number_json(row), status_code=201)


async def register_number(
    state: AppState,
    tenant_id: UUID,
    *,
    phone_number_id: str,
    waba_id: str,
    token: str,
    pin: str | None,
    app_id: str | None = None,
    display: str | None = None,
) -> asyncpg.Record:
    """Prove the token with Meta, then check the number is free here, then subscribe and
    register at Meta, then store the number (token and PIN sealed) in one transaction: a failure
    anywhere stores nothing.

    Whether a number or WABA is registered here is told only to a caller whose token Meta
    accepted for it: asking first would let anyone probe which numbers we serve. No database
    connection is held while Meta answers.
    """
    if app_id is not None:
        async with state.pool.acquire() as conn:
            if await conn.fetchval(Q.tenant_owns_app, app_id, tenant_id) is None:
                raise Unprocessable("'app_id' is not one of your registered apps.", "unknown_app")
    info = await verify_number(
        state.pool,
        state.graph,
        tenant_id,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        token=token,
    )
    async with state.pool.acquire() as conn:
        if await conn.fetchval(Q.number_taken, phone_number_id) is not None:
            raise Conflict("That phone_number_id is already registered.", "number_exists")
        if await conn.fetchval(Q.waba_owner, waba_id, tenant_id) is not None:
            raise Conflict("That WABA belongs to another tenant.", "waba_owned_elsewhere")
    facts = await subscribe_and_register(
        state.pool,
        state.graph,
        tenant_id,
        info,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        token=token,
        pin=pin,
    )
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            Q.insert_number,
            phone_number_id,
            tenant_id,
            waba_id,
            facts.display_phone_number or display,
            app_id,
            "cloud",
            state.box.seal(token, context=sealed.NUMBER_TOKEN.context(phone_number_id)),
            None
            if pin is None
            else state.box.seal(pin, context=sealed.NUMBER_PIN.context(phone_number_id)),
            facts.verified_name,
            facts.quality_rating,
            facts.name_status,
            facts.code_verification_status,
            facts.throughput_level,
            facts.registered,
        )
        if row is None:  # registered by someone else while Meta was being asked
            raise Conflict("That phone_number_id is already registered.", "number_exists")
        # What Meta sent before the number was stored here (subscribing comes first) was
        # kept as orphaned: its deliveries are indexed again now, for this number only.
        adopted = await conn.fetchval(
            Q.adopt_orphaned_events, phone_number_id, waba_id, source_of(app_id)
        )
        await audit.record(
            conn,
            "number.registered",
            tenant_id=tenant_id,
            actor=audit.tenant_actor(tenant_id),
            detail={
                "phone_number_id": phone_number_id,
                "waba_id": waba_id,
                "registered": facts.registered,
                "adopted_deliveries": adopted,
            },
        )
    logger.info(
        "number registered",
        extra={"tenant_id": str(tenant_id), "phone_number_id": phone_number_id},
    )
    return row


async def delete_number(request: Request) -> JSONResponse:
    """Deregister the number at Meta, forget its token and PIN; its history stays."""
    state, caller = await require_tenant(request)
    caller.require_active()
    phone_number_id = request.path_params["phone_number_id"]
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(Q.number_secrets, phone_number_id, caller.tenant_id)
    if row is None:
        raise NotFound("No number with that phone_number_id is yours.")
    deregistered, meta_error = True, None
    try:
        provider = cloud_provider(state.graph, state.box, dict(row))
        await provider.deregister()
    except GraphError as exc:
        # The number is removed here all the same: its secrets must not outlive the wish.
        deregistered, meta_error = False, exc.as_dict()
    except SecretUnreadable:
        deregistered, meta_error = False, {"message": "the access token could not be opened"}
    async with state.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.remove_number, phone_number_id, caller.tenant_id)
        await audit.record(
            conn,
            "number.removed",
            tenant_id=caller.tenant_id,
            actor=audit.tenant_actor(caller.tenant_id),
            severity="info" if deregistered else "warning",
            detail={
                "phone_number_id": phone_number_id,
                "deregistered": deregistered,
                **({"meta": meta_error} if meta_error else {}),
            },
        )
    return JSONResponse(
        {
            "phone_number_id": phone_number_id,
            "removed": True,
            "deregistered": deregistered,
            "meta_error": meta_error,
        }
    )


async def list_numbers(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(Q.list_numbers, caller.tenant_id)
    return JSONResponse({"data": [number_json(r) for r in rows], "next": None})


async def get_number(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(
            Q.get_number, request.path_params["phone_number_id"], caller.tenant_id
        )
    if row is None:
        raise NotFound("No number with that phone_number_id is yours.")
    return JSONResponse(number_json(row))


async def update_number(request: Request) -> JSONResponse:
    """Turn the bot on or off, or set the number's send rate (Meta's throughput: 80/s by
    default, up to 1,000/s once Meta raises it; 20/s for coexistence numbers)."""
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(body, {"bot_enabled", "throughput_mps"})
    if not body:
        raise Unprocessable("Give bot_enabled, throughput_mps or both.", "missing_field")
    bot_enabled = field_bool(body, "bot_enabled")
    throughput = field_int(body, "throughput_mps", low=1, high=1000)
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            Q.update_number,
            request.path_params["phone_number_id"],
            caller.tenant_id,
            bot_enabled,
            throughput,
        )
        if row is None:
            raise NotFound("No number with that phone_number_id is yours.")
        allowed = meta_throughput(row["throughput_level"])
        if throughput is not None and throughput > allowed:
            # Raising it past Meta's only earns 130429s, and the sender's slots are shared.
            raise Unprocessable(
                f"Meta allows this number {allowed} messages a second "
                f"(throughput level {row['throughput_level'] or 'STANDARD'}); "
                "a lower rate may be set, not a higher one.",
                "throughput_above_meta",
            )
        await audit.record(
            conn,
            "number.updated",
            tenant_id=caller.tenant_id,
            actor=audit.tenant_actor(caller.tenant_id),
            detail={"phone_number_id": row["phone_number_id"], **body},
        )
        await enqueue_forward(
            conn,
            caller.tenant_id,
            NUMBER_UPDATED,
            {
                "source": "api",
                "phone_number_id": row["phone_number_id"],
                "waba_id": row["waba_id"],
                "changes": body,
                "number": number_json(row),
            },
            None,  # every change is an event of its own
        )
    logger.info(
        "number updated",
        extra={"tenant_id": str(caller.tenant_id), "phone_number_id": row["phone_number_id"]},
    )
    return JSONResponse(number_json(row))


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
                "last_inbound_at": _iso(r["last_inbound_at"]),
                "window_open": window.open,
                "window_expires_at": _iso(window.expires_at),
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


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


async def list_events(request: Request) -> JSONResponse:
    """This tenant's own rows of the audit log."""
    state, caller = await require_tenant(request)
    return await list_audit(state, request, caller.tenant_id)
