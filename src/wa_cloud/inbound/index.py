"""Typed events into the index: contacts, messages, statuses and field events.

Runs inside the caller's transaction. Every write is idempotent (unique keys with ON CONFLICT DO
NOTHING, the window and the status only moving forward), so a delivery redelivered by Meta or
replayed after a worker died changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from wa_cloud.canonical import digest
from wa_cloud.db.queries import Q
from wa_cloud.events import (
    Delivery,
    FieldEvent,
    InboundMessage,
    StatusKind,
    StatusUpdate,
)
from wa_cloud.forwarding.events import forward_indexed
from wa_cloud.media.inbound import queue_inbound_media


@dataclass(slots=True)
class IndexResult:
    messages: int = 0
    statuses: int = 0
    events: int = 0
    orphaned: int = 0
    duplicates: int = 0
    # Orphaned because the source may not speak for a number that is registered here.
    refused_source: int = 0


# Why an event was kept as orphaned instead of indexed.
UNKNOWN_NUMBER = "unknown_number"
SOURCE_NOT_BOUND = "source_not_bound"
PLATFORM_SOURCE = "platform"


def source_of(app_id: str | None) -> str:
    """The delivery source that speaks for a number bound to `app_id` (None: the platform app)."""
    return PLATFORM_SOURCE if app_id is None else f"app:{app_id}"


async def _contact_id(conn: asyncpg.Connection, tenant_id: UUID, message: InboundMessage) -> int:
    sender = message.sender
    phone_number_id = message.route.phone_number_id
    inbound_at = message.timestamp if message.opens_window else None
    # What the message says of its sender: the same values, in the same order, after each
    # statement's keys, whether the contact is updated or inserted.
    known = (
        sender.wa_id,
        sender.user_id,
        sender.parent_user_id,
        sender.username,
        sender.name,
        inbound_at,
    )
    for _ in range(3):
        row = await conn.fetchrow(
            Q.find_contact, phone_number_id, sender.wa_id, sender.user_id, tenant_id
        )
        if row is not None:
            await conn.execute(Q.update_contact, row["id"], *known)
            return int(row["id"])
        new_id = await conn.fetchval(Q.insert_contact, tenant_id, phone_number_id, *known)
        if new_id is not None:
            return int(new_id)
        # Another worker inserted the same contact between our find and insert: find it again.
    raise RuntimeError("contact upsert did not converge")


async def _message(
    conn: asyncpg.Connection, tenant_id: UUID, message: InboundMessage, delivery_id: int
) -> bool:
    contact_id = await _contact_id(conn, tenant_id, message)
    inserted = await conn.fetchval(
        Q.insert_inbound_message,
        tenant_id,
        message.route.phone_number_id,
        contact_id,
        message.wamid,
        message.type,
        message.text,
        dict(message.raw),
        message.context_wamid,
        message.timestamp,
        delivery_id,
    )
    if inserted is None:
        return False
    await queue_inbound_media(conn, tenant_id, message, inserted)
    return True


async def _status(
    conn: asyncpg.Connection, tenant_id: UUID, status: StatusUpdate, delivery_id: int
) -> bool:
    errors = [dict(e) for e in status.errors]
    pricing = dict(status.pricing) if status.pricing is not None else None
    inserted = await conn.fetchval(
        Q.insert_status,
        tenant_id,
        status.route.phone_number_id,
        status.wamid,
        status.status,
        status.timestamp,
        status.recipient_id,
        status.recipient_user_id,
        errors,
        pricing,
        dict(status.conversation) if status.conversation is not None else None,
        status.biz_opaque_callback_data,
        dict(status.raw),
        delivery_id,
    )
    if inserted is None:
        return False
    if status.kind is not StatusKind.UNKNOWN:
        await conn.execute(
            Q.advance_message_status,
            status.route.phone_number_id,
            status.wamid,
            status.status,
            status.timestamp,
            errors,
            pricing,
            tenant_id,
        )
    if status.kind is StatusKind.FAILED and any(e.get("code") == 131047 for e in errors):
        await conn.execute(
            Q.close_window,
            status.route.phone_number_id,
            status.recipient_id,
            status.recipient_user_id,
            status.timestamp,
            tenant_id,
        )
    return True


async def _field_event(
    conn: asyncpg.Connection,
    tenant_id: UUID | None,
    event: FieldEvent | InboundMessage | StatusUpdate,
    delivery_id: int,
    source: str,
    orphan_reason: str | None,
) -> bool:
    route = event.route
    raw: Mapping[str, Any] = event.raw
    if isinstance(event, FieldEvent):
        field, kind, key_time = event.field, event.kind, event.time
    elif isinstance(event, InboundMessage):
        field, kind, key_time = "messages", "message", None
    else:
        field, kind, key_time = "messages", "status", None
    status = await conn.execute(
        Q.insert_event,
        tenant_id,
        route.phone_number_id,
        route.waba_id,
        field,
        kind,
        tenant_id is None,
        dict(raw),
        digest(route.waba_id, route.phone_number_id, field, kind, key_time, raw),
        delivery_id,
        source if tenant_id is None else None,
        orphan_reason if tenant_id is None else None,
    )
    return bool(status.endswith(" 1"))


# Template news: the cached copy is dropped, so the next send of it fetches Meta's current one.
TEMPLATE_FIELDS = frozenset(
    {
        "message_template_status_update",
        "template_category_update",
        "message_template_quality_update",
        "message_template_components_update",
    }
)


async def _forget_template(conn: asyncpg.Connection, event: FieldEvent, waba_id: str) -> None:
    value = event.raw.get("value")
    name = value.get("message_template_name") if isinstance(value, Mapping) else None
    if isinstance(name, str):
        await conn.execute(Q.forget_template, waba_id, name)


async def index_delivery(
    conn: asyncpg.Connection, delivery: Delivery, delivery_id: int, source: str
) -> IndexResult:
    """Write every event of `delivery`; events for numbers no tenant owns, or that `source` may
    not speak for, are kept as orphaned with the reason.

    The trust rule: the platform app speaks for the numbers registered without an `app_id`, a
    tenant's own app (`app:<id>`) only for the numbers bound to it. A body signed by tenant A's
    app that names tenant B's number never touches B's rows, windows or webhooks.
    """
    by_number: dict[str, UUID] = {}
    by_waba: dict[str, UUID] = {}
    waba_of: dict[str, str] = {}  # number -> its WABA as registered (not as the body says)
    bound_elsewhere: set[str] = set()  # numbers and WABAs registered here, but not to `source`
    forwarded: dict[UUID, frozenset[str]] = {}  # events each owner's webhook takes
    wabas = {e.route.waba_id for e in delivery.events if e.route.waba_id}
    if delivery.phone_number_ids or wabas:
        rows = await conn.fetch(Q.number_owners, list(delivery.phone_number_ids), list(wabas))
        for r in rows:
            if source_of(r["app_id"]) != source:
                bound_elsewhere.update((r["phone_number_id"], r["waba_id"]))
                continue
            by_number[r["phone_number_id"]] = r["tenant_id"]
            waba_of[r["phone_number_id"]] = r["waba_id"]
            by_waba[r["waba_id"]] = r["tenant_id"]
            forwarded[r["tenant_id"]] = frozenset(r["forward_events"])
    result = IndexResult()
    for event in delivery.events:
        key = event.route.phone_number_id
        tenant_id = by_number.get(key or "")
        if isinstance(event, FieldEvent) and key is None:
            # WABA-level news (templates, account): the tenant that owns numbers of that WABA.
            key = event.route.waba_id
            tenant_id = by_waba.get(key or "")
        reason = None
        if tenant_id is None:
            reason = SOURCE_NOT_BOUND if key in bound_elsewhere else UNKNOWN_NUMBER
        if isinstance(event, FieldEvent) and event.field in TEMPLATE_FIELDS and tenant_id:
            # The WABA the source speaks for: a body naming its own number beside another
            # business's WABA must not drop that WABA's cached templates.
            waba = waba_of.get(event.route.phone_number_id or "") or event.route.waba_id
            if waba:
                await _forget_template(conn, event, waba)
        if tenant_id is None or isinstance(event, FieldEvent):
            if await _field_event(conn, tenant_id, event, delivery_id, source, reason):
                result.events += 1
                result.orphaned += tenant_id is None
                result.refused_source += reason == SOURCE_NOT_BOUND
                if tenant_id is not None:
                    await forward_indexed(conn, tenant_id, event, forwarded.get(tenant_id, ()))
            else:
                result.duplicates += 1
        elif isinstance(event, InboundMessage):
            if await _message(conn, tenant_id, event, delivery_id):
                result.messages += 1
                await forward_indexed(conn, tenant_id, event, forwarded.get(tenant_id, ()))
            else:
                result.duplicates += 1
        elif await _status(conn, tenant_id, event, delivery_id):
            result.statuses += 1
            await forward_indexed(conn, tenant_id, event, forwarded.get(tenant_id, ()))
        else:
            result.duplicates += 1
    return result
