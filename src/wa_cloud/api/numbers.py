"""`/v1/numbers` (`Authorization: Bearer <api_key>`): a tenant's numbers, registered, listed,
changed and removed; the steps with Meta are tenants/numbers.py's.

Every query is scoped by the caller's tenant id: another tenant's ids are simply not found.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_tenant
from wa_cloud.asgi import (
    field_bool,
    field_digits,
    field_int,
    field_pin,
    field_str,
    read_object,
    reject_unknown,
)
from wa_cloud.db.queries import Q
from wa_cloud.errors import NotFound, Unprocessable
from wa_cloud.forwarding.events import NUMBER_UPDATED, enqueue_forward
from wa_cloud.providers.watchdog import session_json
from wa_cloud.state import AppState
from wa_cloud.tenants import audit
from wa_cloud.tenants.numbers import (
    meta_throughput,
    number_json,
    register_number,
    register_web_session,
    remove_number,
)

logger = logging.getLogger(__name__)


async def create_number(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(body, _CLOUD_FIELDS | _SESSION_FIELDS)
    provider = field_str(body, "provider", required=False, default="cloud")
    if provider == "websession":
        return await _create_web_session(state, caller.tenant_id, body)
    if provider != "cloud":
        raise Unprocessable("'provider' must be 'cloud' or 'websession'.", "invalid_field")
    reject_unknown(body, _CLOUD_FIELDS)
    phone_number_id = field_digits(body, "phone_number_id")
    waba_id = field_digits(body, "waba_id")
    token = field_str(body, "access_token", max_length=4096)
    if not (token.isascii() and token.isprintable()):
        raise Unprocessable("'access_token' is not a Meta access token.", "invalid_field")
    display = field_digits(body, "display_phone_number", required=False)
    app_id = field_digits(body, "app_id", required=False)
    pin = field_pin(body)
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


_CLOUD_FIELDS = {
    "phone_number_id",
    "waba_id",
    "access_token",
    "display_phone_number",
    "app_id",
    "pin",
    "provider",
}
_SESSION_FIELDS = {"phone_number_id", "display_phone_number", "provider", "gateway"}


async def _create_web_session(
    state: AppState, tenant_id: UUID, body: dict[str, Any]
) -> JSONResponse:
    """A number that speaks through a WhatsApp-Web gateway (design.md): its display number,
    an optional id (the display number's digits by default) and the gateway's URL and key."""
    reject_unknown(body, _SESSION_FIELDS)
    display = field_digits(body, "display_phone_number")
    phone_number_id = field_digits(body, "phone_number_id", required=False) or display
    gateway = body.get("gateway")
    if not isinstance(gateway, dict):
        raise Unprocessable(
            "'gateway' must be an object with 'url' and 'api_key'.", "invalid_field"
        )
    reject_unknown(gateway, {"url", "api_key"})
    url = field_str(gateway, "url", max_length=2048)
    api_key = field_str(gateway, "api_key", max_length=512)
    if not (api_key.isascii() and api_key.isprintable()):
        raise Unprocessable("'gateway.api_key' is not an API key.", "invalid_field")
    row = await register_web_session(
        state,
        tenant_id,
        phone_number_id=phone_number_id,
        display=display,
        gateway_url=url,
        api_key=api_key,
    )
    return JSONResponse(number_json(row), status_code=201)


async def number_qr(request: Request) -> JSONResponse:
    """`GET /v1/numbers/{id}/qr`: a web-session number's state, and the QR code (and pairing
    code) to link it while it waits for a scan."""
    state, caller = await require_tenant(request)
    phone_number_id = request.path_params["phone_number_id"]
    async with state.pool.acquire() as conn:
        number = await conn.fetchrow(Q.get_number, phone_number_id, caller.tenant_id)
        if number is None:
            raise NotFound("No number with that phone_number_id is yours.")
        if number["provider"] != "websession":
            raise Unprocessable(
                "This number uses the Cloud API: it has no QR code.", "not_a_web_session"
            )
        session = await conn.fetchrow(Q.web_session, phone_number_id, caller.tenant_id)
    return JSONResponse(session_json(session))


async def delete_number(request: Request) -> JSONResponse:
    """Deregister the number at Meta, forget its token and PIN; its history stays."""
    state, caller = await require_tenant(request)
    caller.require_active()
    phone_number_id = request.path_params["phone_number_id"]
    removed = await remove_number(state, caller.tenant_id, phone_number_id)
    if removed is None:
        raise NotFound("No number with that phone_number_id is yours.")
    deregistered, meta_error = removed
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
    row = await change_number(
        state,
        caller.tenant_id,
        request.path_params["phone_number_id"],
        bot_enabled=bot_enabled,
        throughput=throughput,
        actor=audit.tenant_actor(caller.tenant_id),
        changes=body,
    )
    return JSONResponse(number_json(row))


async def change_number(
    state: AppState,
    tenant_id: UUID,
    phone_number_id: str,
    *,
    bot_enabled: bool | None,
    throughput: int | None,
    actor: str,
    changes: dict[str, Any],
    source: str = "api",
) -> asyncpg.Record:
    """The tenant's number with its bot switched or its rate set (None: unchanged), audited and
    forwarded as `number.updated`; the API and the console both change a number this way.
    `changes` is what the caller asked for, as the audit row and the forwarded event show it."""
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            Q.update_number, phone_number_id, tenant_id, bot_enabled, throughput
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
            tenant_id=tenant_id,
            actor=actor,
            detail={"phone_number_id": row["phone_number_id"], **changes},
        )
        await enqueue_forward(
            conn,
            tenant_id,
            NUMBER_UPDATED,
            {
                "source": source,
                "phone_number_id": row["phone_number_id"],
                "waba_id": row["waba_id"],
                "changes": changes,
                "number": number_json(row),
            },
            None,  # every change is an event of its own
        )
    logger.info(
        "number updated",
        extra={"tenant_id": str(tenant_id), "phone_number_id": row["phone_number_id"]},
    )
    return row
