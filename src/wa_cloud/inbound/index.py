"""Typed events into the index, a claimed batch at a time: contacts, messages, statuses, field
events, and the forwards and media downloads they queue.

Set-based: the batch's events are sorted by kind in Python, then each kind is written in one
statement for the whole batch (parallel arrays through `unnest`), so the cost is a handful of
round trips per batch, not several per event. Runs inside the caller's transaction. Every write
is idempotent (unique keys with ON CONFLICT DO NOTHING, the window and the status only moving
forward), so a delivery redelivered by Meta, twice in one batch, or replayed after a worker
died changes nothing the second time; within a batch the first occurrence (in delivery order)
is the one stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from wa_cloud.ai.config import DEFAULTS
from wa_cloud.ai.followup_rules import cancel_on_inbound
from wa_cloud.ai.schedule import ReplyJob, answers, schedule_replies
from wa_cloud.campaigns.limits import apply_quality_update
from wa_cloud.campaigns.optouts import is_start_word, is_stop_word, record_opt_outs
from wa_cloud.canonical import digest
from wa_cloud.db.pool import jsonb_text
from wa_cloud.db.queries import Q
from wa_cloud.events import (
    Delivery,
    EchoMessage,
    FieldEvent,
    InboundMessage,
    StatusKind,
    StatusUpdate,
)
from wa_cloud.forwarding.events import Forward, enqueue_forwards, forward_of
from wa_cloud.inbound.gateway import SESSION_FIELD
from wa_cloud.inbound.sessions import Echo, SessionNews, apply_session_news, index_echoes
from wa_cloud.media.inbound import MediaJob, media_job, queue_media_jobs
from wa_cloud.outbox.templates import apply_template_news


@dataclass(slots=True)
class IndexResult:
    messages: int = 0
    statuses: int = 0
    events: int = 0
    orphaned: int = 0
    duplicates: int = 0
    # Orphaned because the source may not speak for a number that is registered here.
    refused_source: int = 0

    def add(self, other: IndexResult) -> None:
        self.messages += other.messages
        self.statuses += other.statuses
        self.events += other.events
        self.orphaned += other.orphaned
        self.duplicates += other.duplicates
        self.refused_source += other.refused_source


@dataclass(frozen=True, slots=True)
class Item:
    """One stored delivery of the batch, parsed."""

    delivery_id: int
    source: str
    delivery: Delivery


# Why an event was kept as orphaned instead of indexed.
UNKNOWN_NUMBER = "unknown_number"
SOURCE_NOT_BOUND = "source_not_bound"
PLATFORM_SOURCE = "platform"

# Template news: the cached copy is dropped, so the next send of it fetches Meta's current one.
TEMPLATE_FIELDS = frozenset(
    {
        "message_template_status_update",
        "template_category_update",
        "message_template_quality_update",
        "message_template_components_update",
    }
)


def source_of(app_id: str | None) -> str:
    """The delivery source that speaks for a number bound to `app_id` (None: the platform app)."""
    return PLATFORM_SOURCE if app_id is None else f"app:{app_id}"


def gateway_source(phone_number_id: str) -> str:
    """The only source that speaks for a web-session number: its own gateway's webhook."""
    return f"websession:{phone_number_id}"


@dataclass(frozen=True, slots=True)
class _Owner:
    tenant_id: UUID
    waba_id: str
    source: str  # the only source that speaks for the number
    subscribed: frozenset[str]  # events the tenant's webhook takes
    bot_enabled: bool = False
    debounce_seconds: float = 0.0
    owner_phones: tuple[str, ...] = ()
    instance: str | None = None  # a web session's gateway instance
    opt_out_words: tuple[str, ...] | None = None  # None: the default stop words


@dataclass(slots=True)
class _Owners:
    """Who owns the batch's numbers and WABAs, read in one query; `number` and `waba` apply the
    trust rule per delivery: the platform app speaks for the numbers registered without an
    `app_id`, a tenant's own app (`app:<id>`) only for the numbers bound to it."""

    by_number: dict[str, _Owner] = field(default_factory=dict)
    by_waba: dict[str, list[_Owner]] = field(default_factory=dict)

    def number(self, number: str | None, source: str) -> tuple[_Owner | None, bool]:
        """The owner `source` may speak for, and whether the number is registered at all."""
        owner = self.by_number.get(number or "")
        if owner is None:
            return None, False
        return (owner if owner.source == source else None), True

    def waba(self, waba: str | None, source: str) -> tuple[_Owner | None, bool]:
        owners = self.by_waba.get(waba or "", [])
        return next((o for o in owners if o.source == source), None), bool(owners)


async def _owners(conn: asyncpg.Connection, items: Sequence[Item]) -> _Owners:
    numbers = {n for item in items for n in item.delivery.phone_number_ids}
    wabas = {e.route.waba_id for item in items for e in item.delivery.events if e.route.waba_id}
    owners = _Owners()
    if not numbers and not wabas:
        return owners
    for r in await conn.fetch(
        Q.number_owners, list(numbers), list(wabas), DEFAULTS.debounce_seconds
    ):
        owner = _Owner(
            r["tenant_id"],
            r["waba_id"],
            gateway_source(r["phone_number_id"])
            if r["provider"] == "websession"
            else source_of(r["app_id"]),
            frozenset(r["forward_events"]),
            r["bot_enabled"],
            r["debounce_seconds"],
            tuple(r["owner_phones"]),
            r["gateway_instance"],
            None if r["opt_out_words"] is None else tuple(r["opt_out_words"]),
        )
        owners.by_number[r["phone_number_id"]] = owner
        owners.by_waba.setdefault(r["waba_id"], []).append(owner)
    return owners


@dataclass(slots=True)
class _Message:
    owner: _Owner
    event: InboundMessage
    delivery_id: int
    contact: _Contact | None = None  # None: a sender with no id


@dataclass(slots=True)
class _Status:
    owner: _Owner
    event: StatusUpdate
    delivery_id: int


@dataclass(slots=True)
class _Field:
    """An event kept in the event log: a field event, or any event orphaned."""

    owner: _Owner | None
    event: FieldEvent | InboundMessage | StatusUpdate | EchoMessage
    delivery_id: int
    source: str
    reason: str | None
    key: bytes = b""


@dataclass(slots=True)
class _Contact:
    """What a batch's messages say of one sender, folded in delivery order as one statement at
    a time would: identifiers we did not know are filled in (the first wins), names and
    usernames take the latest, and the window only moves forward."""

    tenant_id: UUID
    phone_number_id: str
    wa_id: str | None
    user_id: str | None
    parent_user_id: str | None = None
    username: str | None = None
    name: str | None = None
    last_inbound_at: datetime | None = None
    id: int | None = None

    def fold(self, message: InboundMessage) -> None:
        sender = message.sender
        inbound_at = message.timestamp if message.opens_window else None
        self._fold(
            sender.wa_id,
            sender.user_id,
            sender.parent_user_id,
            sender.username,
            sender.name,
            inbound_at,
        )

    def merge(self, later: _Contact) -> None:
        """`later`'s messages came after this one's, about the same stored contact."""
        self._fold(
            later.wa_id,
            later.user_id,
            later.parent_user_id,
            later.username,
            later.name,
            later.last_inbound_at,
        )

    def _fold(
        self,
        wa_id: str | None,
        user_id: str | None,
        parent_user_id: str | None,
        username: str | None,
        name: str | None,
        inbound_at: datetime | None,
    ) -> None:
        # As update_contacts does, once per message: coalesce(known, new) for identifiers,
        # coalesce(new, known) for the rest, greatest() for the window.
        self.wa_id = self.wa_id if self.wa_id is not None else wa_id
        self.user_id = self.user_id if self.user_id is not None else user_id
        self.parent_user_id = parent_user_id if parent_user_id is not None else self.parent_user_id
        self.username = username if username is not None else self.username
        self.name = name if name is not None else self.name
        if inbound_at is not None and (
            self.last_inbound_at is None or inbound_at > self.last_inbound_at
        ):
            self.last_inbound_at = inbound_at


@dataclass(slots=True)
class _Batch:
    messages: list[_Message] = field(default_factory=list)
    statuses: list[_Status] = field(default_factory=list)
    fields: list[_Field] = field(default_factory=list)
    # WABA, its tenant, the news
    templates: list[tuple[str, UUID, FieldEvent]] = field(default_factory=list)
    echoes: list[Echo] = field(default_factory=list)
    sessions: list[SessionNews] = field(default_factory=list)
    contacts: list[_Contact] = field(default_factory=list)
    result: IndexResult = field(default_factory=IndexResult)


def _sort(items: Sequence[Item], owners: _Owners) -> _Batch:
    """Each event to the kind of row it becomes, for the tenant its source may speak for."""
    batch = _Batch()
    for item in items:
        for event in item.delivery.events:
            number = event.route.phone_number_id
            if isinstance(event, FieldEvent) and number is None:
                # WABA-level news (templates, account): the tenant that owns numbers of that WABA.
                owner, registered = owners.waba(event.route.waba_id, item.source)
            else:
                owner, registered = owners.number(number, item.source)
            if owner is not None and owner.instance is not None:
                # Posted with the number's secret, but by an instance of an earlier
                # registration (its events belong to whoever had the number then).
                owner = owner if item.delivery.origin == owner.instance else None
            if owner is None:
                reason = SOURCE_NOT_BOUND if registered else UNKNOWN_NUMBER
                batch.fields.append(_Field(None, event, item.delivery_id, item.source, reason))
            elif isinstance(event, FieldEvent):
                if event.field in TEMPLATE_FIELDS:
                    # The WABA the source speaks for: a body naming its own number beside
                    # another business's WABA must not drop that WABA's cached templates.
                    batch.templates.append((owner.waba_id, owner.tenant_id, event))
                batch.fields.append(_Field(owner, event, item.delivery_id, item.source, None))
            elif isinstance(event, InboundMessage):
                batch.messages.append(_Message(owner, event, item.delivery_id))
            elif isinstance(event, EchoMessage):
                batch.echoes.append(Echo(owner.tenant_id, event, item.delivery_id))
            else:
                batch.statuses.append(_Status(owner, event, item.delivery_id))
    return batch


async def index_batch(conn: asyncpg.Connection, items: Sequence[Item]) -> IndexResult:
    """Write every event of `items`; events for numbers no tenant owns, or that their delivery's
    source may not speak for, are kept as orphaned with the reason. A body signed by tenant A's
    app that names tenant B's number never touches B's rows, windows or webhooks."""
    batch = _sort(items, await _owners(conn, items))
    forwards: list[Forward] = []
    await apply_template_news(conn, batch.templates)
    await _contacts(conn, batch)
    forwards += await _messages(conn, batch)
    forwards += await _statuses(conn, batch)
    forwards += await _fields(conn, batch)
    await index_echoes(conn, batch.echoes)
    await apply_session_news(conn, batch.sessions)
    await _campaign_news(conn, batch)
    await enqueue_forwards(conn, forwards)
    return batch.result


async def _campaign_news(conn: asyncpg.Connection, batch: _Batch) -> None:
    """What campaigns need from this batch: stop words and Meta's user preferences (opt-outs),
    and a number's quality and messaging limit."""
    said: dict[tuple[str, str], tuple[UUID, str, str, str | None, bool]] = {}
    for m in batch.messages:  # a contact's last word in the batch counts
        number, wa_id, text = m.event.route.phone_number_id, m.event.sender.wa_id, m.event.text
        if not wa_id or not number:
            continue
        if is_stop_word(text, m.owner.opt_out_words):
            said[number, wa_id] = (m.owner.tenant_id, number, wa_id, text, True)
        elif is_start_word(text):
            said[number, wa_id] = (m.owner.tenant_id, number, wa_id, text, False)
    prefs: list[tuple[UUID, str, Mapping[str, Any]]] = []
    for f in batch.fields:
        event = f.event
        if f.owner is None or not isinstance(event, FieldEvent):
            continue
        value = event.raw.get("value")
        if not isinstance(value, Mapping):
            continue
        if event.field == "user_preferences" and event.route.phone_number_id:
            prefs.append((f.owner.tenant_id, event.route.phone_number_id, value))
        elif event.field == "phone_number_quality_update":
            await apply_quality_update(conn, f.owner.waba_id, f.owner.tenant_id, value)
    if said or prefs:
        await record_opt_outs(conn, list(said.values()), prefs)


async def _contacts(conn: asyncpg.Connection, batch: _Batch) -> None:
    """Each sender's contact, found or created, in three statements for the batch."""
    index: dict[tuple[UUID, str, str], _Contact] = {}  # (tenant, number, "w:"/"u:" id)
    for message in batch.messages:
        sender, number = message.event.sender, message.event.route.phone_number_id or ""
        tenant = message.owner.tenant_id
        keys = [(tenant, number, f"w:{sender.wa_id}")] if sender.wa_id else []
        keys += [(tenant, number, f"u:{sender.user_id}")] if sender.user_id else []
        if not keys:
            continue  # a sender with no id: the message is stored without a contact
        contact = next((index[k] for k in keys if k in index), None)
        if contact is None:
            contact = _Contact(tenant, number, None, None)
            batch.contacts.append(contact)
        contact.fold(message.event)
        for key in keys:
            index.setdefault(key, contact)
        message.contact = contact
    if not batch.contacts:
        return
    contacts = batch.contacts
    found = await conn.fetch(
        Q.find_contacts,
        [c.tenant_id for c in contacts],
        [c.phone_number_id for c in contacts],
        [c.wa_id for c in contacts],
        [c.user_id for c in contacts],
        list(range(len(contacts))),
    )
    # Two of the batch's senders may turn out to be one stored contact (one message named its
    # wa_id, another its user_id): their values are folded into the first, in batch order, so
    # the contact gets one update (an UPDATE ... FROM matching a row twice applies one at random).
    first: dict[int, _Contact] = {}
    for row in sorted((r for r in found if r["id"] is not None), key=lambda r: r["n"]):
        contact = contacts[row["n"]]
        contact.id = row["id"]
        if row["id"] in first:
            first[row["id"]].merge(contact)
        else:
            first[row["id"]] = contact
    known = list(first.values())
    if known:
        await conn.execute(
            Q.update_contacts,
            [c.id for c in known],
            *_contact_columns(known),
        )
    new = [c for c in contacts if c.id is None]
    if new:
        inserted = await conn.fetch(
            Q.insert_contacts,
            [c.tenant_id for c in new],
            [c.phone_number_id for c in new],
            *_contact_columns(new),
        )
        by_key = {
            (r["tenant_id"], r["phone_number_id"], r["wa_id"], r["user_id"]): r["id"]
            for r in inserted
        }
        for c in new:
            c.id = by_key.get((c.tenant_id, c.phone_number_id, c.wa_id, c.user_id))
        if any(c.id is None for c in new):
            # Stored meanwhile by a writer that does not take the contacts' locks: the batch
            # fails and is tried again (smaller), where the find sees it.
            raise RuntimeError("a contact was stored by another writer during the batch")


def _contact_columns(contacts: Sequence[_Contact]) -> list[list[Any]]:
    return [
        [c.wa_id for c in contacts],
        [c.user_id for c in contacts],
        [c.parent_user_id for c in contacts],
        [c.username for c in contacts],
        [c.name for c in contacts],
        [c.last_inbound_at for c in contacts],
    ]


def _first_stored(keys: Sequence[tuple[Any, ...]], stored: set[tuple[Any, ...]]) -> list[bool]:
    """Which of `keys` (in batch order) were stored by the statement that returned `stored`:
    the first occurrence of each stored key; the rest are duplicates."""
    new: list[bool] = []
    for key in keys:
        new.append(key in stored)
        stored.discard(key)
    return new


async def _messages(conn: asyncpg.Connection, batch: _Batch) -> list[Forward]:
    messages = batch.messages
    if not messages:
        return []
    rows = await conn.fetch(
        Q.insert_inbound_messages,
        [m.owner.tenant_id for m in messages],
        [m.event.route.phone_number_id for m in messages],
        # A contact merged into another (one stored contact) took the other's id.
        [None if m.contact is None else m.contact.id for m in messages],
        [m.event.wamid for m in messages],
        [m.event.type for m in messages],
        [m.event.text for m in messages],
        [jsonb_text(dict(m.event.raw)) for m in messages],
        [m.event.context_wamid for m in messages],
        [m.event.timestamp for m in messages],
        [m.delivery_id for m in messages],
    )
    stored_ids = {(r["phone_number_id"], r["wamid"]): r["id"] for r in rows}
    keys = [(m.event.route.phone_number_id, m.event.wamid) for m in messages]
    forwards: list[Forward] = []
    jobs: list[MediaJob] = []
    replies: list[ReplyJob] = []
    wrote: list[int] = []  # contacts who wrote: their follow-ups are off
    for message, key, new in zip(messages, keys, _first_stored(keys, set(stored_ids)), strict=True):
        if not new:
            batch.result.duplicates += 1
            continue
        batch.result.messages += 1
        owner = message.owner
        web_session = owner.source.startswith("websession:")
        job = media_job(owner.tenant_id, message.event, stored_ids[key], web_session=web_session)
        if job is not None:
            jobs.append(job)
        contact_id = None if message.contact is None else message.contact.id
        if contact_id is not None:
            wrote.append(contact_id)
        if contact_id is not None and answers(
            message.event, bot_enabled=owner.bot_enabled, owner_phones=owner.owner_phones
        ):
            replies.append(
                ReplyJob(
                    owner.tenant_id,
                    str(message.event.route.phone_number_id),
                    contact_id,
                    owner.debounce_seconds,
                    stored_ids[key],
                )
            )
        forward = forward_of(message.owner.tenant_id, message.event, message.owner.subscribed)
        if forward is not None:
            forwards.append(forward)
    await queue_media_jobs(conn, jobs)
    await schedule_replies(conn, replies)
    await cancel_on_inbound(conn, wrote)
    return forwards


async def _statuses(conn: asyncpg.Connection, batch: _Batch) -> list[Forward]:
    statuses = batch.statuses
    if not statuses:
        return []
    errors = [[dict(e) for e in s.event.errors] for s in statuses]
    pricing = [dict(s.event.pricing) if s.event.pricing is not None else None for s in statuses]
    rows = await conn.fetch(
        Q.insert_statuses,
        [s.owner.tenant_id for s in statuses],
        [s.event.route.phone_number_id for s in statuses],
        [s.event.wamid for s in statuses],
        [s.event.status for s in statuses],
        [s.event.timestamp for s in statuses],
        [s.event.recipient_id for s in statuses],
        [s.event.recipient_user_id for s in statuses],
        [jsonb_text(e) for e in errors],
        [jsonb_text(p) for p in pricing],
        [
            jsonb_text(dict(s.event.conversation)) if s.event.conversation is not None else None
            for s in statuses
        ],
        [s.event.biz_opaque_callback_data for s in statuses],
        [jsonb_text(dict(s.event.raw)) for s in statuses],
        [s.delivery_id for s in statuses],
    )
    keys = [(s.event.route.phone_number_id, s.event.wamid, s.event.status) for s in statuses]
    stored = {(r["phone_number_id"], r["wamid"], r["status"]) for r in rows}
    advance: list[tuple[_Status, Any, Any]] = []
    closing: list[_Status] = []
    forwards: list[Forward] = []
    for i, (status, new) in enumerate(zip(statuses, _first_stored(keys, stored), strict=True)):
        if not new:
            batch.result.duplicates += 1
            continue
        batch.result.statuses += 1
        event = status.event
        if event.kind is not StatusKind.UNKNOWN:
            advance.append((status, errors[i], pricing[i]))
        if event.kind is StatusKind.FAILED and any(e.get("code") == 131047 for e in errors[i]):
            closing.append(status)
        forward = forward_of(status.owner.tenant_id, event, status.owner.subscribed)
        if forward is not None:
            forwards.append(forward)
    await _advance(conn, advance)
    if closing:
        await conn.execute(
            Q.close_windows,
            [s.event.route.phone_number_id for s in closing],
            [s.event.recipient_id for s in closing],
            [s.event.recipient_user_id for s in closing],
            [s.event.timestamp for s in closing],
            [s.owner.tenant_id for s in closing],
        )
    return forwards


async def _advance(conn: asyncpg.Connection, advance: Sequence[tuple[_Status, Any, Any]]) -> None:
    """Apply the statuses to their messages in rounds: a message's statuses in batch order, at
    most one per round, so each round's UPDATE applies exactly what one at a time would (an
    UPDATE ... FROM that matched a message twice would apply only one, at random)."""
    rounds: list[list[tuple[_Status, Any, Any]]] = []
    seen: dict[tuple[str | None, str], int] = {}
    for entry in advance:
        key = (entry[0].event.route.phone_number_id, entry[0].event.wamid)
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(entry)
    for entries in rounds:
        await conn.execute(
            Q.advance_message_statuses,
            [s.event.route.phone_number_id for s, _, _ in entries],
            [s.event.wamid for s, _, _ in entries],
            [s.event.status for s, _, _ in entries],
            [s.event.timestamp for s, _, _ in entries],
            [jsonb_text(errors) for _, errors, _ in entries],
            [jsonb_text(pricing) for _, _, pricing in entries],
            [s.owner.tenant_id for s, _, _ in entries],
        )


async def _fields(conn: asyncpg.Connection, batch: _Batch) -> list[Forward]:
    fields = batch.fields
    if not fields:
        return []
    kinds: list[tuple[str | None, str | None, str, str]] = []
    for f in fields:
        event = f.event
        route = event.route
        raw: Mapping[str, Any] = event.raw
        if isinstance(event, FieldEvent):
            name, kind, key_time = event.field, event.kind, event.time
        elif isinstance(event, InboundMessage | EchoMessage):
            name, kind, key_time = "messages", "message", None
        else:
            name, kind, key_time = "messages", "status", None
        f.key = digest(route.waba_id, route.phone_number_id, name, kind, key_time, raw)
        kinds.append((route.phone_number_id, route.waba_id, name, kind))
    rows = await conn.fetch(
        Q.insert_events,
        [None if f.owner is None else f.owner.tenant_id for f in fields],
        [k[0] for k in kinds],
        [k[1] for k in kinds],
        [k[2] for k in kinds],
        [k[3] for k in kinds],
        [f.owner is None for f in fields],
        [jsonb_text(dict(f.event.raw)) for f in fields],
        [f.key for f in fields],
        [f.delivery_id for f in fields],
        [f.source if f.owner is None else None for f in fields],
        [f.reason for f in fields],
    )
    stored = {(bytes(r["dedup_key"]),) for r in rows}
    forwards: list[Forward] = []
    for f, new in zip(fields, _first_stored([(f.key,) for f in fields], stored), strict=True):
        if not new:
            batch.result.duplicates += 1
            continue
        batch.result.events += 1
        if f.owner is None:
            batch.result.orphaned += 1
            batch.result.refused_source += f.reason == SOURCE_NOT_BOUND
            continue
        if isinstance(f.event, EchoMessage):
            continue  # an owner's echo is a message (index_echoes), never a field
        if isinstance(f.event, FieldEvent) and f.event.field == SESSION_FIELD:
            batch.sessions.append(SessionNews(f.owner.tenant_id, f.event))
        forward = forward_of(f.owner.tenant_id, f.event, f.owner.subscribed)
        if forward is not None:
            forwards.append(forward)
    return forwards
