"""A contact's follow-ups and reminders: `GET /v1/contacts/{id}/follow-ups`,
`POST /v1/contacts/{id}/reminders`, and `DELETE /v1/contacts/{id}/follow-ups/{follow_up_id}`
to call one off while it waits.

A reminder is a message the business sets for a fixed time: `{"phone_number_id", "at",
"text" | "template"}`. `at` is an RFC 3339 date-time with its offset ("2027-03-01T09:00:00-05:00"),
in the future and at most a year ahead; a contact has at most `MAX_WAITING_REMINDERS` waiting
(409 `too_many_reminders`: a flood, not a calendar). It goes out as the assistant's follow-ups do
(ai/followups.py): a text only inside the 24-hour window (outside it the reminder is skipped),
a template at any time; a template is checked as `POST /v1/messages` checks one (approved on the
number's WABA, its parameters matching) when the reminder is set.

Scoped by the caller's tenant and a contact of one of its numbers: anyone else's is not found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_tenant
from wa_cloud.api.contacts import find_contact, phone_number_param
from wa_cloud.api.pagination import cursor_id, decode_cursor, limit_of, page
from wa_cloud.asgi import field_digits, field_str, read_object, reject_unknown
from wa_cloud.canonical import iso
from wa_cloud.db.queries import Q
from wa_cloud.errors import Conflict, NotFound, Unprocessable
from wa_cloud.outbox.compose import template_request
from wa_cloud.outbox.enqueue import approved_template, sending_number
from wa_cloud.outbox.templates import check_parameters
from wa_cloud.providers.numbers import capabilities_of, request_providers
from wa_cloud.tenants import audit

MAX_AHEAD: Final = timedelta(days=366)
MAX_TEXT: Final = 4096
MAX_WAITING_REMINDERS: Final = 20  # per contact: more is a flood, not a calendar
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)
_ID: Final = re.compile(r"[0-9]{1,18}")


def follow_up_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "state": row["state"],
        "reason": row["reason"],
        "rule": row["rule_index"],
        "attempt": row["attempt"],
        "max": row["max_attempts"],
        "due_at": iso(row["due_at"]),
        "text": row["text"],
        "template": row["template"],
        "message_id": None if row["message_id"] is None else str(row["message_id"]),
        "created_at": iso(row["created_at"]),
        "finished_at": iso(row["finished_at"]),
    }


def parse_reminder_at(value: Any, now: datetime) -> datetime:
    """`at`: RFC 3339 with an offset, after `now` and at most a year ahead."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise Unprocessable(
            "'at' must be an RFC 3339 date-time with its offset, like '2027-03-01T09:00:00-05:00'.",
            "invalid_field",
        )
    try:
        at = datetime.fromisoformat(value.upper().replace(" ", "T")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Unprocessable("'at' is not a valid date-time.", "invalid_field") from None
    if at <= now:
        raise Unprocessable("'at' must be in the future.", "invalid_field")
    if at > now + MAX_AHEAD:
        raise Unprocessable("'at' may be at most a year ahead.", "invalid_field")
    return at


async def list_follow_ups(request: Request) -> JSONResponse:
    """Newest first: the assistant's follow-ups and the reminders, whatever became of them."""
    state, caller = await require_tenant(request)
    number = phone_number_param(request)
    limit = limit_of(request)
    (before,) = decode_cursor(request, cursor_id) or (None,)
    async with state.pool.acquire() as conn:
        contact_id = await find_contact(
            conn, caller.tenant_id, number, request.path_params["contact"]
        )
        rows = await conn.fetch(Q.list_follow_ups, contact_id, caller.tenant_id, before, limit + 1)
    return JSONResponse(page([follow_up_json(r) for r in rows], limit, "id"))


async def create_reminder(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(body, {"phone_number_id", "at", "text", "template"})
    number = field_digits(body, "phone_number_id")
    at = parse_reminder_at(body.get("at"), datetime.now(UTC))
    text = field_str(body, "text", required=False, max_length=MAX_TEXT)
    template = body.get("template")
    if (text is None) == (template is None):
        raise Unprocessable("Give exactly one of 'text' or 'template'.", "invalid_field")
    if template is not None and not isinstance(template, Mapping):
        raise Unprocessable("'template' must be Meta's template object.", "invalid_field")
    contact = request.path_params["contact"]
    providers = request_providers(state.graph, state.tenant_http, state.box)
    async with state.pool.acquire() as conn:
        contact_id = await find_contact(conn, caller.tenant_id, number, contact)
        sender = await sending_number(conn, caller.tenant_id, {"from": number}, providers)
    if template is not None:
        if not capabilities_of(sender).templates:
            raise Unprocessable(
                "This number is a web session: it has no templates; set a text reminder.",
                "templates_unsupported",
            )
        sent = template_request(contact, template).body["template"]
        stored = await approved_template(
            state.pool,
            sender,
            sent["name"],
            sent["language"]["code"],
            providers,
            state.template_fetches,
        )
        check_parameters(dict(stored), sent)
        template = dict(sent)
    async with state.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.lock_contact_reminders, contact_id)
        row = await conn.fetchrow(
            Q.insert_reminder,
            caller.tenant_id,
            number,
            contact_id,
            at,
            text,
            template,
            MAX_WAITING_REMINDERS,
        )
        if row is None:
            raise Conflict(
                f"This contact has {MAX_WAITING_REMINDERS} reminders waiting already: "
                "cancel one or wait until one goes.",
                "too_many_reminders",
            )
        await conn.execute(Q.notify_follow_ups)
        await audit.record(
            conn,
            "reminder.created",
            tenant_id=caller.tenant_id,
            actor=audit.tenant_actor(caller.tenant_id),
            detail={"phone_number_id": number, "follow_up_id": row["id"], "at": iso(at)},
        )
    return JSONResponse(follow_up_json(row), status_code=201)


async def cancel_follow_up(request: Request) -> JSONResponse:
    """Call off a follow-up or reminder that still waits (409 once it went out or ended)."""
    state, caller = await require_tenant(request)
    caller.require_active()
    number = phone_number_param(request)
    given = request.path_params["follow_up_id"]
    if not _ID.fullmatch(given):
        raise NotFound("No follow-up with that id for this contact.")
    follow_up_id = int(given)
    async with state.pool.acquire() as conn, conn.transaction():
        contact_id = await find_contact(
            conn, caller.tenant_id, number, request.path_params["contact"]
        )
        row: asyncpg.Record | None = await conn.fetchrow(
            Q.cancel_follow_up, follow_up_id, contact_id, caller.tenant_id
        )
        if row is None:
            found = await conn.fetchrow(
                Q.find_follow_up, follow_up_id, contact_id, caller.tenant_id
            )
            if found is None:
                raise NotFound("No follow-up with that id for this contact.")
            raise Conflict(
                f"This follow-up is {found['state']}: only a scheduled one can be cancelled.",
                "not_scheduled",
            )
        await audit.record(
            conn,
            "follow_up.cancelled",
            tenant_id=caller.tenant_id,
            actor=audit.tenant_actor(caller.tenant_id),
            detail={"phone_number_id": number, "follow_up_id": follow_up_id},
        )
    return JSONResponse(follow_up_json(row))
