"""`POST /v1/messages` and `GET /v1/messages/{id}`: sends through the durable outbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import Caller, require_tenant
from wa_cloud.asgi import parse_uuid, read_object, reject_unknown
from wa_cloud.campaigns.broadcasts import CALLBACK_PREFIX
from wa_cloud.canonical import iso
from wa_cloud.db.queries import Q
from wa_cloud.errors import NotFound, Unprocessable
from wa_cloud.outbox.compose import SEND_TYPES
from wa_cloud.outbox.enqueue import Queued, enqueue
from wa_cloud.providers.numbers import request_providers
from wa_cloud.state import AppState

_ALLOWED = {
    "from",
    "to",
    "type",
    "context",
    "idempotency_key",
    "fallback_template",
    "biz_opaque_callback_data",
} | SEND_TYPES


async def send_message(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    queued = await queue_message(state, caller, body)
    return JSONResponse(
        {"id": str(queued.id), "status": queued.status}, status_code=202 if queued.created else 200
    )


async def queue_message(state: AppState, caller: Caller, body: Mapping[str, Any]) -> Queued:
    """A send as `POST /v1/messages` takes it (the console's composer sends through here too):
    checked, then queued in the outbox with everything that applies to a person's send (the
    window, pacing, the assistant's pause for human takeover)."""
    caller.require_active()
    # The type's own key is allowed through so an unknown type is named as such, not as a field.
    reject_unknown(body, _ALLOWED | {str(body.get("type"))})
    callback = body.get("biz_opaque_callback_data")
    if isinstance(callback, str) and callback.startswith(CALLBACK_PREFIX):
        # A campaign's status settles the send its callback names: the tenant's own message
        # must not pass for a line of one of its campaigns.
        raise Unprocessable(
            f"'biz_opaque_callback_data' cannot start with '{CALLBACK_PREFIX}': campaigns' "
            "sends use it.",
            "invalid_field",
        )
    return await enqueue(
        state.pool,
        caller.tenant_id,
        body,
        request_providers(state.graph, state.tenant_http, state.box),
        state.template_fetches,
        state.outbox.poke,
    )


def message_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "wamid": row["wamid"],
        "from": row["phone_number_id"],
        "to": row["recipient"],
        "direction": row["direction"],
        "type": row["type"],
        "status": row["status"],
        "errors": row["errors"],
        "text": row["text"],
        "used_fallback_template": row["used_fallback"],
        "pricing": row["pricing"],
        "attempts": row["attempts"],
        "idempotency_key": row["idempotency_key"],
        "created_at": iso(row["created_at"]),
        "accepted_at": iso(row["accepted_at"]),
        "status_at": iso(row["status_at"]),
    }


async def get_message(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    message_id = parse_uuid(request.path_params["message_id"])
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(Q.get_message, message_id, caller.tenant_id)
    if row is None:
        raise NotFound("No message with that id.")
    return JSONResponse(message_json(row))
