"""What is forwarded to tenants' webhooks: the event names, their payloads, and the enqueue.

`enqueue_forward` inserts a `forwards` row on the caller's connection, in its transaction, and
only when the tenant's webhook takes that event (one statement: INSERT ... SELECT ... WHERE
EXISTS); a dedup key makes an event indexed twice one forward, and a NOTIFY on `wa_forwards`
wakes the forwarder at commit. The indexer queues `forward_of` each event it newly stored, a
batch in one statement (`enqueue_forwards`); other code (bot replies, number changes) calls
`enqueue_forward` directly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import asyncpg

from wa_cloud.canonical import canonical_json, iso
from wa_cloud.db.pool import jsonb_text
from wa_cloud.db.queries import Q
from wa_cloud.events import FieldEvent, InboundMessage, StatusUpdate

MESSAGE_RECEIVED: Final = "message.received"
MESSAGE_STATUS: Final = "message.status"
NUMBER_UPDATED: Final = "number.updated"
TEMPLATE_UPDATED: Final = "template.updated"
BOT_REPLY: Final = "bot.reply"
EVENTS: Final = (MESSAGE_RECEIVED, MESSAGE_STATUS, NUMBER_UPDATED, TEMPLATE_UPDATED, BOT_REPLY)

# Meta's webhook fields that become a forwarded event (the rest stay in the event log only).
FIELD_EVENTS: Final[Mapping[str, str]] = {
    "message_template_status_update": TEMPLATE_UPDATED,
    "template_category_update": TEMPLATE_UPDATED,
    "message_template_quality_update": TEMPLATE_UPDATED,
    "message_template_components_update": TEMPLATE_UPDATED,
    "phone_number_quality_update": NUMBER_UPDATED,
    "phone_number_name_update": NUMBER_UPDATED,
}


def dedup_key(event: str, dedup: bytes | str | None) -> bytes:
    """The row's unique key: the same event and dedup give the same key; None, a new one."""
    if dedup is None:
        return os.urandom(32)
    raw = dedup if isinstance(dedup, bytes) else dedup.encode()
    return hashlib.sha256(event.encode() + b"\x00" + raw).digest()


async def enqueue_forward(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    event: str,
    payload: Mapping[str, Any],
    dedup: bytes | str | None,
) -> None:
    """Queue `event` for the tenant's webhook if it takes that event: once per `dedup` (what
    identifies the event, e.g. its wamid), or every time when `dedup` is None."""
    if event not in EVENTS:
        raise ValueError(f"unknown forwarded event {event!r}")
    await conn.execute(Q.enqueue_forward, tenant_id, event, dict(payload), dedup_key(event, dedup))


def _received(message: InboundMessage) -> tuple[dict[str, Any], str]:
    sender = message.sender
    payload = {
        "phone_number_id": message.route.phone_number_id,
        "display_phone_number": message.route.display_phone_number,
        "wamid": message.wamid,
        "from": sender.wa_id or sender.user_id,
        "contact": {
            "wa_id": sender.wa_id,
            "user_id": sender.user_id,
            "username": sender.username,
            "name": sender.name,
        },
        "type": message.type,
        "text": message.text,
        "context_wamid": message.context_wamid,
        "timestamp": iso(message.timestamp),
        "message": dict(message.raw),
    }
    return payload, canonical_json(message.route.phone_number_id, message.wamid)


def _status(status: StatusUpdate) -> tuple[dict[str, Any], str]:
    payload = {
        "phone_number_id": status.route.phone_number_id,
        "wamid": status.wamid,
        "status": status.status,
        "timestamp": iso(status.timestamp),
        "recipient": status.recipient_id or status.recipient_user_id,
        "recipient_user_id": status.recipient_user_id,
        "errors": [dict(e) for e in status.errors],
        "pricing": None if status.pricing is None else dict(status.pricing),
        "conversation": None if status.conversation is None else dict(status.conversation),
        "biz_opaque_callback_data": status.biz_opaque_callback_data,
    }
    return payload, canonical_json(status.route.phone_number_id, status.wamid, status.status)


def _field(event: FieldEvent) -> tuple[dict[str, Any], str]:
    route = event.route
    payload = {
        "source": "meta",
        "waba_id": route.waba_id,
        "phone_number_id": route.phone_number_id,
        "field": event.field,
        "time": iso(event.time),
        "value": event.raw.get("value", dict(event.raw)),
    }
    dedup = canonical_json(route.waba_id, route.phone_number_id, event.field, event.time, event.raw)
    return payload, dedup


@dataclass(frozen=True, slots=True)
class Forward:
    """A `forwards` row to queue: what `enqueue_forwards` takes."""

    tenant_id: UUID
    event: str
    payload: dict[str, Any]
    dedup_key: bytes


def forward_of(
    tenant_id: UUID,
    event: InboundMessage | StatusUpdate | FieldEvent,
    subscribed: Collection[str],
) -> Forward | None:
    """What the indexer queues for an event it newly stored, if the tenant's webhook takes it.
    `subscribed` is what the indexer read with the number's owner: nothing to do is no row."""
    if not subscribed:
        return None
    if isinstance(event, InboundMessage):
        name = MESSAGE_RECEIVED
        if name not in subscribed:
            return None
        payload, dedup = _received(event)
    elif isinstance(event, StatusUpdate):
        name = MESSAGE_STATUS
        if name not in subscribed:
            return None
        payload, dedup = _status(event)
    else:
        name = FIELD_EVENTS.get(event.field, "")
        if name not in subscribed:
            return None
        payload, dedup = _field(event)
    return Forward(tenant_id, name, payload, dedup_key(name, dedup))


async def enqueue_forwards(conn: asyncpg.Connection, rows: Sequence[Forward]) -> None:
    """Queue many forwards in one statement (the indexer's batch), each only while its tenant's
    webhook still takes the event, once per dedup key; one wake-up for the forwarder."""
    if not rows:
        return
    await conn.execute(
        Q.enqueue_forwards,
        [r.tenant_id for r in rows],
        [r.event for r in rows],
        [jsonb_text(r.payload) for r in rows],
        [r.dedup_key for r in rows],
    )
