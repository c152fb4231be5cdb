"""Which inbound messages the assistant answers, and their reply jobs, queued by the indexer in
the transaction that stores the messages (so a message and its reply job commit together, and a
redelivered message, never stored twice, schedules nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from uuid import UUID

import asyncpg

from wa_cloud.db.queries import Q
from wa_cloud.events import InboundMessage

# What a customer writes that deserves an answer. Reactions, edits, revocations, system notices
# and types we cannot read are stored and never answered.
ANSWERED_TYPES: Final = frozenset(
    {
        "text",
        "audio",
        "voice",
        "image",
        "sticker",
        "video",
        "document",
        "interactive",
        "button",
        "location",
        "contacts",
        "order",
    }
)


def in_group(message: InboundMessage) -> bool:
    """A message written in a group (Meta's groups carry `group_id`; a web session's group
    chats end in @g.us): stored, never answered."""
    raw = message.raw
    if raw.get("group_id"):
        return True
    sender = message.sender.wa_id or message.sender.user_id or ""
    return sender.endswith("@g.us")


def answers(message: InboundMessage, *, bot_enabled: bool, owner_phones: Sequence[str]) -> bool:
    """Whether a newly stored message schedules a reply job: a one-to-one message of an answered
    type, to a number whose assistant is on, or from one of its owner phones (their commands
    work while the assistant is off: `activar todo` turns it back on)."""
    if message.type not in ANSWERED_TYPES or in_group(message):
        return False
    return bot_enabled or (message.sender.wa_id or "") in owner_phones


@dataclass(frozen=True, slots=True)
class ReplyJob:
    tenant_id: UUID
    phone_number_id: str
    contact_id: int
    debounce_seconds: float
    message_id: UUID


async def schedule_replies(conn: asyncpg.Connection, jobs: Sequence[ReplyJob]) -> None:
    """On the caller's connection, in its transaction: one statement for the batch, one wake-up
    for the assistant when anything was scheduled."""
    if not jobs:
        return
    await conn.execute(
        Q.schedule_replies,
        [j.tenant_id for j in jobs],
        [j.phone_number_id for j in jobs],
        [j.contact_id for j in jobs],
        [j.debounce_seconds for j in jobs],
        [j.message_id for j in jobs],
    )
