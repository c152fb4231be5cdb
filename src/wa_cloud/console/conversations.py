"""What the inbox shows: a number's conversations, one thread and its contact, read in bounded
pages (db/sql/console_inbox.sql) and shaped for the templates (bubbles with their ticks, media
and failures; the list with unread counts; the composer's template picker).

Every read is scoped by the caller's tenant; a conversation that is not the tenant's on that
number is a 404 (console/inbox.py serves these).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Final
from urllib.parse import urlencode
from uuid import UUID

import asyncpg

from wa_cloud.ai.followup_rules import zone_of
from wa_cloud.ai.memory import shown_fields
from wa_cloud.api.pagination import encode_cursor
from wa_cloud.api.templates import fetch_templates
from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError, NotFound
from wa_cloud.outbox.templates import placeholders
from wa_cloud.providers.cloud import CloudProvider
from wa_cloud.providers.numbers import capabilities_of, request_providers
from wa_cloud.state import AppState
from wa_cloud.window import window_state

PAGE_SIZE: Final = 50  # conversations per page
THREAD_SIZE: Final = 60  # messages of a thread per page
UNREAD_CAP: Final = 99  # more unread shows as "99+" (the count stops at 100)
# A WABA of which we hold no template is asked again at most this often by the picker.
TEMPLATE_FETCH_SECONDS: Final = 60.0
_AUTHORS: Final = {"bot": "Assistant", "human": "Human / API", "campaign": "Campaign"}
_PAUSED_BY: Final = {
    "api": "the API",
    "console": "the console",
    "human": "a person's reply",
    "contact": "the contact",
    "owner": "the owner's command",
}
# Ticks: (symbol, what a screen reader says, class).
_TICKS: Final = {
    "queued": ("◷", "queued", "pending"),
    "sending": ("◷", "sending", "pending"),
    "accepted": ("✓", "accepted by Meta", "sent"),
    "sent": ("✓", "sent", "sent"),
    "delivered": ("✓✓", "delivered", "delivered"),
    "read": ("✓✓", "read", "read"),
    "played": ("✓✓", "played", "read"),
    "failed": ("!", "failed", "failed"),
    "unknown": ("?", "status unknown", "pending"),
}
_MEDIA_KINDS: Final = frozenset({"image", "audio", "video", "document", "sticker"})


# What the templates show -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NumberChoice:
    id: str
    label: str
    provider: str
    waba_id: str | None
    bot_enabled: bool
    zone: tzinfo


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    title: str
    subtitle: str
    preview: str
    outbound: bool
    at: str
    at_iso: str
    unread: str  # "" when none, else "3" or "99+"


@dataclass(frozen=True, slots=True)
class Tick:
    symbol: str
    label: str
    css: str


@dataclass(frozen=True, slots=True)
class Bubble:
    id: UUID
    out: bool
    kind: str
    text: str | None
    understood: str | None  # a transcript or a description of the media
    at: str
    at_iso: str
    tick: Tick | None
    failure: str | None
    author: str | None
    media: str | None  # the kind, when its bytes are here to show
    media_note: str | None  # why they are not
    filename: str | None
    template: str | None
    purged: bool


@dataclass(frozen=True, slots=True)
class Variable:
    field: str  # the form field: "body.1", "header.name"
    label: str


@dataclass(frozen=True, slots=True)
class TemplateChoice:
    name: str
    language: str
    text: str
    variables: list[Variable]
    unsupported: str | None  # why the console cannot fill it in (the API can)


def thread_url(number: str, contact_id: int) -> str:
    return f"/console/inbox/{number}/{contact_id}"


def with_query(path: str, **params: Any) -> str:
    given = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(given)}" if given else path


# Formatting --------------------------------------------------------------------------------
def _when(at: datetime | None, zone: tzinfo) -> tuple[str, str]:
    """A time as the page shows it (today: the hour; else the day too) and its ISO form."""
    if at is None:
        return "", ""
    local, now = at.astimezone(zone), datetime.now(zone)
    if local.date() == now.date():
        shown = f"{local:%H:%M}"
    elif local.year == now.year:
        shown = f"{local.day} {local:%b %H:%M}"
    else:
        shown = f"{local.day} {local:%b %Y}"
    return shown, at.isoformat()


def _contact_title(row: Mapping[str, Any]) -> tuple[str, str]:
    number = row["wa_id"] and f"+{row['wa_id']}"
    handle = number or row["username"] or row["user_id"] or ""
    return (row["name"] or handle or "Unknown contact"), (handle if row["name"] else "")


def _number_choice(row: Mapping[str, Any]) -> NumberChoice:
    display = row["display_phone_number"]
    label = " · ".join(p for p in (row["verified_name"], display) if p) or row["phone_number_id"]
    return NumberChoice(
        id=row["phone_number_id"],
        label=label,
        provider=row["provider"],
        waba_id=row["waba_id"],
        bot_enabled=row["bot_enabled"],
        zone=zone_of(row["timezone"]),
    )


def removed_number(number: str) -> NumberChoice:
    return NumberChoice(number, f"{number} (removed)", "cloud", None, False, UTC)


def _preview(row: Mapping[str, Any]) -> str:
    if row["purged"]:
        return "(cleared by retention)"
    if row["template"]:
        return f"Template “{row['template']}”"
    text = row["text"] or (f"[{row['type']}]" if row["type"] else "")
    return text if len(text) <= 80 else text[:79] + "…"


def _conversation(row: Mapping[str, Any], zone: tzinfo) -> Conversation:
    title, subtitle = _contact_title(row)
    at, at_iso = _when(row["at"] or row["last_inbound_at"], zone)
    unread = row["unread"]
    return Conversation(
        id=row["id"],
        title=title,
        subtitle=subtitle,
        preview=_preview(row),
        outbound=row["direction"] == "out",
        at=at,
        at_iso=at_iso,
        unread="" if not unread else (f"{UNREAD_CAP}+" if unread > UNREAD_CAP else str(unread)),
    )


def _failure(errors: Any) -> str:
    """Meta's reason for a failed send: its details, message or title, with its code."""
    reasons = []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, Mapping):
            continue
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, Mapping) else None
        text = details or error.get("message") or error.get("title") or "unknown error"
        reasons.append(f"{text} ({error['code']})" if error.get("code") else str(text))
    return "; ".join(reasons) or "Meta gave no reason."


def _bubble(row: Mapping[str, Any], zone: tzinfo) -> Bubble:
    out = row["direction"] == "out"
    kind = row["type"]
    content = row["content"] if isinstance(row["content"], Mapping) else {}
    media = media_note = None
    if kind in _MEDIA_KINDS and not row["purged"]:
        if row["media_state"] == "stored":
            media = "image" if kind == "sticker" else kind
        elif row["media_state"] == "pending":
            media_note = f"The {kind} is still being downloaded."
        elif row["media_state"] == "failed" or not out:
            media_note = f"The {kind} is not available."
    at, at_iso = _when(row["at"], zone)
    status = row["status"]
    symbol, label, css = _TICKS.get(status, _TICKS["unknown"])
    filename = content.get("filename")
    template = _template_shown(content) if kind == "template" else None
    return Bubble(
        id=row["id"],
        out=out,
        kind=kind,
        text=row["text"],
        understood=row["media_text"],
        at=at,
        at_iso=at_iso,
        tick=Tick(symbol, label, css) if out else None,
        failure=_failure(row["errors"]) if out and status == "failed" else None,
        author=_AUTHORS.get(row["author"] or "") if out else None,
        media=media,
        media_note=media_note,
        filename=filename if isinstance(filename, str) else None,
        template=template,
        purged=row["purged"],
    )


def _template_shown(sent: Mapping[str, Any]) -> str | None:
    """A sent template as the thread names it: “name” and its body's values."""
    name = sent.get("name")
    if not isinstance(name, str):
        return None
    values = [
        str(param.get("text"))
        for component in sent.get("components") or []
        if isinstance(component, Mapping) and component.get("type") == "body"
        for param in component.get("parameters") or []
        if isinstance(param, Mapping) and param.get("text") is not None
    ]
    return f"“{name}”" + (f": {', '.join(values)}" if values else "")


def _bot_state(contact: Mapping[str, Any], number: NumberChoice) -> str:
    if contact["bot_paused"]:
        until = contact["paused_until"]
        end = f"until {_when(until, number.zone)[0]}" if until else "until resumed"
        by = _PAUSED_BY.get(contact["paused_by"] or "", contact["paused_by"] or "someone")
        return f"Paused {end}, by {by}."
    if not number.bot_enabled:
        return "Off for this number."
    return "Active."


# Reads -------------------------------------------------------------------------------------
async def read_numbers(conn: asyncpg.Connection, tenant_id: UUID) -> list[NumberChoice]:
    return [_number_choice(r) for r in await conn.fetch(Q.inbox_numbers, tenant_id)]


def number_of(numbers: Sequence[NumberChoice], number: str) -> NumberChoice | None:
    return next((n for n in numbers if n.id == number), None)


@dataclass(frozen=True, slots=True)
class Listing:
    conversations: list[Conversation]
    src: str  # the list fragment's address, for live refreshes
    older: str | None  # the next page
    q: str
    current: int | None
    capped: bool = False  # a search found more than one page shows


async def read_listing(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    number: NumberChoice,
    q: str,
    cursor: list[Any] | None,
    current: int | None,
) -> Listing:
    older, capped = None, False
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        digits = re.sub(r"\D", "", q)
        page = await conn.fetch(
            Q.inbox_search,
            tenant_id,
            number.id,
            f"%{escaped}%",
            f"%{digits}%" if len(digits) >= 3 else None,
            q,
            PAGE_SIZE + 1,
        )
        capped = len(page) > PAGE_SIZE
        page = page[:PAGE_SIZE]
    else:
        after, after_id = cursor or (None, None)
        page = await conn.fetch(Q.inbox_page, tenant_id, number.id, after, after_id, PAGE_SIZE + 1)
        if len(page) > PAGE_SIZE:
            page = page[:PAGE_SIZE]
            last = page[-1]
            older = with_query(
                "/console/inbox",
                number=number.id,
                cursor=encode_cursor(last["last_inbound_at"].isoformat(), last["id"]),
            )
    rows = await conn.fetch(Q.inbox_conversations, tenant_id, [r["id"] for r in page])
    # A live refresh shows the same page again, an older one included.
    at = encode_cursor(cursor[0].isoformat(), cursor[1]) if cursor and not q else None
    src = with_query(f"/console/inbox/{number.id}/list", q=q, current=current, cursor=at)
    conversations = [_conversation(r, number.zone) for r in rows]
    return Listing(conversations, src, older, q, current, capped)


async def read_templates(
    state: AppState, tenant_id: UUID, number: NumberChoice
) -> tuple[list[TemplateChoice], str | None]:
    """The approved templates of the number's WABA as we hold them, fetched from Meta first
    when we hold none (at most once a minute per WABA); no connection is held meanwhile."""
    waba = number.waba_id
    if not waba:
        return [], None
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(Q.inbox_templates, waba)
    error = None
    if not rows and not state.template_fetches.fetched_within(waba, TEMPLATE_FETCH_SECONDS):
        async with state.pool.acquire() as conn:
            sender = await conn.fetchrow(Q.sender_number, number.id, tenant_id)
        if sender is None:
            return [], None
        try:
            provider = request_providers(state.graph, state.tenant_http, state.box)(sender)
            if isinstance(provider, CloudProvider):

                async def fetch() -> None:
                    await fetch_templates(state, provider, waba)

                await state.template_fetches.fetch_once(waba, fetch)
        except ApiError as exc:
            error = exc.message
        async with state.pool.acquire() as conn:
            rows = await conn.fetch(Q.inbox_templates, waba)
    return [template_choice(r) for r in rows if r["status"] == "APPROVED"], error


def template_choice(row: Mapping[str, Any]) -> TemplateChoice:
    text, variables, unsupported = "", [], None
    for component in row["components"] or []:
        if not isinstance(component, Mapping):
            continue
        kind = str(component.get("type", "")).upper()
        if kind == "BODY":
            text = str(component.get("text") or "")
        if kind == "BODY" or (kind == "HEADER" and component.get("format") == "TEXT"):
            part = kind.lower()
            variables += [
                Variable(f"{part}.{name}", f"{part.capitalize()} {{{{{name}}}}}")
                for name in placeholders(component.get("text"))
            ]
        elif kind == "HEADER" and component.get("format") not in (None, "TEXT"):
            unsupported = f"Its header needs a {str(component['format']).lower()}."
        elif kind == "BUTTONS" and any(
            b.get("type") == "COPY_CODE" or (b.get("type") == "URL" and placeholders(b.get("url")))
            for b in component.get("buttons") or []
            if isinstance(b, Mapping)
        ):
            unsupported = "Its buttons need parameters."
    if unsupported:
        unsupported += " Send it through the API."
    return TemplateChoice(row["name"], row["language"], text, variables, unsupported)


@dataclass(frozen=True, slots=True)
class Thread:
    number: NumberChoice
    numbers: list[NumberChoice]
    contact: asyncpg.Record
    bubbles: list[Bubble]
    older: str | None
    newest: str | None  # back to the latest messages, when reading older ones
    messages_src: str
    window_open: bool
    window_expires: str


async def read_thread(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    number_id: str,
    contact_id: int,
    before: list[Any] | None,
) -> Thread:
    contact = await conn.fetchrow(Q.inbox_contact, contact_id, tenant_id, number_id)
    if contact is None:
        raise NotFound("No conversation with that id on that number.")
    numbers = await read_numbers(conn, tenant_id)
    number = number_of(numbers, number_id) or removed_number(number_id)
    if before is None:
        await conn.execute(Q.inbox_mark_read, contact_id, tenant_id)
    after, after_id = before or (None, None)
    rows = await conn.fetch(
        Q.inbox_messages, contact_id, tenant_id, after, after_id, THREAD_SIZE + 1
    )
    url = thread_url(number_id, contact_id)
    older = None
    if len(rows) > THREAD_SIZE:
        rows = rows[:THREAD_SIZE]
        older = with_query(url, before=encode_cursor(rows[-1]["at"].isoformat(), rows[-1]["id"]))
    cursor = encode_cursor(after.isoformat(), after_id) if after is not None else None
    window = window_state(contact["last_inbound_at"], contact["window_closed_at"])
    open_ = (
        window.open or not capabilities_of({"provider": number.provider}).customer_service_window
    )
    return Thread(
        number=number,
        numbers=numbers,
        contact=contact,
        bubbles=[_bubble(r, number.zone) for r in reversed(rows)],
        older=older,
        newest=url if before is not None else None,
        messages_src=with_query(f"{url}/messages", before=cursor),
        window_open=open_,
        window_expires=_when(window.expires_at, number.zone)[0],
    )


def panel_context(
    number: NumberChoice, contact: Mapping[str, Any], detail: Mapping[str, Any]
) -> dict[str, Any]:
    title, subtitle = _contact_title(contact)
    fields = sorted(shown_fields(contact["fields"]).items())
    url = thread_url(number.id, contact["id"])
    return {
        "contact_title": title,
        "contact_subtitle": subtitle,
        "contact": contact,
        "tags": list(contact["tags"]),
        "notes": contact["notes"] or "",
        "fields": [(name, entry["value"]) for name, entry in fields],
        "fields_text": "\n".join(f"{name}={entry['value']}" for name, entry in fields),
        "first_message": _when(detail["first_message_at"], number.zone)[0],
        "last_message": _when(detail["last_message_at"], number.zone)[0],
        "messages_in": detail["messages_in"],
        "messages_out": detail["messages_out"],
        "bot_state": _bot_state(contact, number),
        "bot_paused": contact["bot_paused"],
        "panel_src": url + "/panel",
        "thread_url": url,
    }
