"""`GET /v1/contacts`, one contact with its memory (`GET|PATCH /v1/contacts/{contact}`: tags,
notes, fields; ai/memory.py), a contact's messages (what a tenant's numbers received and sent),
and pausing or resuming the assistant in one conversation.

Scoped by the caller's tenant and by a number that is (or was) theirs: another tenant's ids are
simply not found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.ai.fields import valid_field_name
from wa_cloud.ai.memory import (
    MAX_FIELDS,
    MAX_TAGS,
    MAX_VALUE_LENGTH,
    apply_changes,
    normalise_tag,
    parse_field_changes,
    parse_notes,
    parse_tags,
    shown_fields,
)
from wa_cloud.api.auth import require_tenant
from wa_cloud.api.pagination import (
    cursor_id,
    cursor_time,
    cursor_uuid,
    decode_cursor,
    limit_of,
    page,
)
from wa_cloud.asgi import DIGITS, field_digits, field_number, read_object, reject_unknown
from wa_cloud.canonical import iso
from wa_cloud.db.queries import Q
from wa_cloud.errors import BadRequest, NotFound, Unprocessable
from wa_cloud.tenants import audit
from wa_cloud.window import window_state

# The longest pause with an end: a year (longer: pause until resumed).
MAX_PAUSE_MINUTES: Final = 525_600
# `GET /v1/contacts?field.city=Bogota`: a filter on a field's value, one per field.
FIELD_FILTER: Final = "field."


def phone_number_param(request: Request) -> str:
    """The `?phone_number_id=` a tenant route is about (400 when missing or not digits)."""
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


async def find_contact(conn: asyncpg.Connection, tenant_id: UUID, number: str, contact: str) -> int:
    """The id of the tenant's contact `contact` (a wa_id or user_id) on `number`; 404 unless
    the number is (or was) the tenant's and the contact wrote to or was written from it."""
    await require_own_number(conn, tenant_id, number)
    contact_id: int | None = await conn.fetchval(Q.find_tenant_contact, tenant_id, number, contact)
    if contact_id is None:
        raise NotFound("No contact with that wa_id or user_id on that number.")
    return contact_id


def contact_json(row: asyncpg.Record) -> dict[str, Any]:
    """A contact as the API shows it, from fragments/contact_view.sql's columns (its internal
    `id` is for paging only)."""
    window = window_state(row["last_inbound_at"], row["window_closed_at"])
    return {
        "wa_id": row["wa_id"],
        "user_id": row["user_id"],
        "name": row["name"],
        "username": row["username"],
        "last_inbound_at": iso(row["last_inbound_at"]),
        "window_open": window.open,
        "window_expires_at": iso(window.expires_at),
        "bot_paused": row["bot_paused"],
        "paused_until": iso(row["paused_until"]),
        "tags": list(row["tags"]),
        "notes": row["notes"],
        "fields": shown_fields(row["fields"]),  # not the removals kept (ai/memory.py)
    }


def contact_detail_json(row: asyncpg.Record) -> dict[str, Any]:
    """One contact (memory/contact_detail): the list's shape with its message counts and times."""
    return {
        **contact_json(row),
        "first_message_at": iso(row["first_message_at"]),
        "last_message_at": iso(row["last_message_at"]),
        "messages_in": row["messages_in"],
        "messages_out": row["messages_out"],
    }


def list_filters(request: Request) -> tuple[list[str], dict[str, Any]]:
    """`?tag=` (repeatable: every tag) and `?field.<name>=<value>` (the value exactly), as the
    list query's containment arguments; 400 for a filter that could never match (more tags or
    fields than a contact may have among them: refused before any query is planned)."""
    given = request.query_params.getlist("tag")
    if len(given) > MAX_TAGS:
        raise BadRequest(f"At most {MAX_TAGS} 'tag' filters.", "invalid_filter")
    try:
        tags = list(dict.fromkeys(normalise_tag(t) for t in given))
    except Unprocessable as exc:
        raise BadRequest(f"'tag': {exc.message}", "invalid_filter") from None
    fields: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if not key.startswith(FIELD_FILTER):
            continue
        if len(fields) >= MAX_FIELDS:
            raise BadRequest(f"At most {MAX_FIELDS} 'field.' filters.", "invalid_filter")
        name = key.removeprefix(FIELD_FILTER)
        if (
            not valid_field_name(name)
            or not value.strip()
            or len(value) > MAX_VALUE_LENGTH
            or "\x00" in value
        ):
            raise BadRequest(
                f"'{key[:60]}' must name a snake_case field and give a value.",
                "invalid_filter",
            )
        if name in fields:
            raise BadRequest(f"'{key}' is given twice.", "invalid_filter")
        fields[name] = {"value": value.strip()}
    return tags, fields


async def list_contacts(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    phone_number_id = phone_number_param(request)
    limit = limit_of(request)
    (after,) = decode_cursor(request, cursor_id) or (None,)
    tags, fields = list_filters(request)
    async with state.pool.acquire() as conn:
        await require_own_number(conn, caller.tenant_id, phone_number_id)
        rows = await conn.fetch(
            Q.list_contacts, caller.tenant_id, phone_number_id, after, limit + 1, tags, fields
        )
    items = [{"id": r["id"], **contact_json(r)} for r in rows]
    result = page(items, limit, "id")
    for item in result["data"]:
        del item["id"]
    return JSONResponse(result)


async def get_contact(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    phone_number_id = phone_number_param(request)
    async with state.pool.acquire() as conn:
        contact_id = await find_contact(
            conn, caller.tenant_id, phone_number_id, request.path_params["contact"]
        )
        row = await conn.fetchrow(Q.contact_detail, contact_id, caller.tenant_id)
    return JSONResponse(contact_detail_json(row))


async def update_contact(request: Request) -> JSONResponse:
    """`{"tags"?, "notes"?, "fields"?}`: `tags` replaces the list, `notes` the notes; `fields`
    merges (a null value removes that field). Values set here are marked `by: "api"`."""
    state, caller = await require_tenant(request)
    caller.require_active()
    phone_number_id = phone_number_param(request)
    body = await read_object(request)
    reject_unknown(body, {"tags", "notes", "fields"})
    change = MemoryChange(
        tags=parse_tags(body["tags"]) if "tags" in body else None,
        notes=parse_notes(body["notes"]) if "notes" in body else None,
        notes_given="notes" in body,
        fields=parse_field_changes(body["fields"]) if "fields" in body else {},
    )
    contact = request.path_params["contact"]
    async with state.pool.acquire() as conn, conn.transaction():
        contact_id = await find_contact(conn, caller.tenant_id, phone_number_id, contact)
        row = await save_memory(
            conn, caller.tenant_id, phone_number_id, contact_id, contact, change
        )
    return JSONResponse(contact_detail_json(row))


@dataclass(frozen=True, slots=True)
class MemoryChange:
    """A contact's memory as a caller changes it, already validated (ai/memory.py's parsers)."""

    tags: list[str] | None  # None: unchanged; else the whole new list
    notes: str | None
    notes_given: bool  # False: the notes stay as they are
    fields: dict[str, str | None]  # merged in; a None value removes that field
    fields_replace: bool = False  # True: fields absent from `fields` are removed as well


async def save_memory(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    phone_number_id: str,
    contact_id: int,
    contact: str,
    change: MemoryChange,
) -> asyncpg.Record:
    """Write a memory change of the tenant's contact (`contact`: its wa_id or user_id, for the
    audit) inside the caller's transaction; the contact as GET /v1/contacts/{id} shows it."""
    current = await conn.fetchrow(Q.lock_contact_memory, contact_id, tenant_id)
    changes: dict[str, str | None] = {}
    if change.fields_replace:
        changes = dict.fromkeys(shown_fields(current["fields"]))
    changes.update(change.fields)
    fields = apply_changes(current["fields"], changes, at=datetime.now(UTC))
    await conn.execute(
        Q.save_contact_memory,
        contact_id,
        tenant_id,
        current["tags"] if change.tags is None else change.tags,
        change.notes if change.notes_given else current["notes"],
        fields,
    )
    # What changed, never the values: they are the customer's personal data.
    await audit.record(
        conn,
        "contact.updated",
        tenant_id=tenant_id,
        actor=audit.tenant_actor(tenant_id),
        detail={
            "phone_number_id": phone_number_id,
            "contact": contact,
            "changed": sorted(
                k
                for k, given in (("tags", change.tags is not None), ("notes", change.notes_given))
                if given
            ),
            "fields": sorted(changes),
        },
    )
    return await conn.fetchrow(Q.contact_detail, contact_id, tenant_id)


async def contact_messages(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    phone_number_id = phone_number_param(request)
    limit = limit_of(request)
    after, after_id = decode_cursor(request, cursor_time, cursor_uuid) or (None, None)
    async with state.pool.acquire() as conn:
        contact_id = await find_contact(
            conn, caller.tenant_id, phone_number_id, request.path_params["contact"]
        )
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
            "purged": r["purged"],
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


async def pause_contact(request: Request) -> JSONResponse:
    """`{"phone_number_id", "minutes"?}`: the assistant stays out of this conversation for that
    long (without minutes: until resumed)."""
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(body, {"phone_number_id", "minutes"})
    number = field_digits(body, "phone_number_id")
    minutes = pause_minutes(body)
    contact = request.path_params["contact"]
    async with state.pool.acquire() as conn, conn.transaction():
        contact_id = await find_contact(conn, caller.tenant_id, number, contact)
        row = await pause(conn, caller.tenant_id, number, contact_id, contact, minutes, "api")
    return JSONResponse(contact_json(row))


def pause_minutes(body: Mapping[str, Any]) -> float | None:
    """A pause's `minutes`: above 0 and at most a year; None: until resumed."""
    return field_number(body, "minutes", low=0, high=MAX_PAUSE_MINUTES, above=True)


async def pause(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    number: str,
    contact_id: int,
    contact: str,
    minutes: float | None,
    by: str,
) -> asyncpg.Record:
    """Pause the assistant in the tenant's conversation (`by`: who asked, as pauses.sql names
    it), audited; the contact as the API shows it."""
    row = await conn.fetchrow(Q.pause_conversation, contact_id, tenant_id, minutes, by)
    await audit.record(
        conn,
        "contact.paused",
        tenant_id=tenant_id,
        actor=audit.tenant_actor(tenant_id),
        detail={"phone_number_id": number, "contact": contact, "minutes": minutes},
    )
    return row


async def resume_contact(request: Request) -> JSONResponse:
    """`{"phone_number_id"}`: the assistant answers this conversation again, whoever paused it."""
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(body, {"phone_number_id"})
    number = field_digits(body, "phone_number_id")
    contact = request.path_params["contact"]
    async with state.pool.acquire() as conn, conn.transaction():
        contact_id = await find_contact(conn, caller.tenant_id, number, contact)
        row = await resume(conn, caller.tenant_id, number, contact_id, contact)
    return JSONResponse(contact_json(row))


async def resume(
    conn: asyncpg.Connection, tenant_id: UUID, number: str, contact_id: int, contact: str
) -> asyncpg.Record:
    """The assistant answers the tenant's conversation again, whoever paused it; audited."""
    row = await conn.fetchrow(Q.resume_conversation, contact_id, tenant_id)
    await audit.record(
        conn,
        "contact.resumed",
        tenant_id=tenant_id,
        actor=audit.tenant_actor(tenant_id),
        detail={"phone_number_id": number, "contact": contact},
    )
    return row
