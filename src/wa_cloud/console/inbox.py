"""The business's inbox: its conversations, one thread at a time, a reply box and the contact.

Every change a page makes goes through the API's own function for it: a send is
`POST /v1/messages`'s (api/messages.py queue_message: the window, pacing, the assistant's pause
for human takeover), an attachment `POST /v1/media`'s upload, pausing and resuming and the
contact's memory api/contacts.py's. What the pages show is read by console/conversations.py,
scoped by the caller's tenant: another tenant's number, contact or message is a 404, as in the
API. The list, the thread and the contact panel are live regions (console.js).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from wa_cloud import formdata
from wa_cloud.ai.memory import parse_field_changes, parse_notes, parse_tags
from wa_cloud.api.contacts import (
    MemoryChange,
    pause,
    pause_minutes,
    require_own_number,
    resume,
    save_memory,
)
from wa_cloud.api.files import file_kind
from wa_cloud.api.media import File, Upload, media_response, upload_to_meta
from wa_cloud.api.messages import queue_message
from wa_cloud.api.pagination import (
    BIGINT_MAX,
    cursor_id,
    cursor_time,
    cursor_uuid,
    decode_cursor,
    whole_number,
)
from wa_cloud.asgi import DIGITS, parse_uuid
from wa_cloud.console import session as sessions
from wa_cloud.console import views
from wa_cloud.console.conversations import (
    TemplateChoice,
    Thread,
    number_of,
    panel_context,
    read_listing,
    read_numbers,
    read_templates,
    read_thread,
    removed_number,
    template_choice,
    thread_url,
)
from wa_cloud.console.session import Business
from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError, BadRequest, NotFound, Unprocessable
from wa_cloud.media.rules import KB, MAX_MEDIA_BYTES, MB
from wa_cloud.state import AppState

MAX_QUERY: Final = 200
# An attachment: Meta's largest file (a document), and the text beside it.
_SEND_LIMITS: Final = formdata.FormLimits(
    max_body_bytes=MAX_MEDIA_BYTES + MB,
    max_file_bytes=MAX_MEDIA_BYTES,
    max_parts=3,
    max_field_bytes=16 * KB,
    allowed_names=frozenset({"csrf", "body", "file"}),
)
# A message's file, shown inline: kept an hour by this browser alone, so a live refresh of
# the thread does not fetch every thumbnail again.
_MEDIA_HEADERS: Final = {
    "cache-control": "private, max-age=3600",
    "content-security-policy": "default-src 'none'; sandbox",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


@dataclass(slots=True)
class Composer:
    mode: str  # "text" | "template" | "readonly"
    note: str | None = None
    templates: list[TemplateChoice] = field(default_factory=list)
    templates_error: str | None = None


# Reading a request -------------------------------------------------------------------------
def _number_id(request: Request) -> str:
    number = str(request.path_params["phone_number_id"])
    if not DIGITS.fullmatch(number):
        raise NotFound("No number with that phone_number_id is yours.")
    return number


def _contact_id(request: Request) -> int:
    contact_id = whole_number(str(request.path_params["contact_id"]), BIGINT_MAX)
    if contact_id is None:
        raise NotFound("No conversation with that id.")
    return contact_id


def _query(request: Request) -> str:
    # No NUL (PostgreSQL text cannot hold one, not even to compare): a search, never an error.
    return request.query_params.get("q", "").replace("\x00", "").strip()[:MAX_QUERY]


def _list_cursor(request: Request) -> list[Any] | None:
    return decode_cursor(request, cursor_time, cursor_id)


async def _composer(state: AppState, business: Business, thread: Thread) -> Composer:
    if not business.caller.active:
        return Composer(
            "readonly", "This account is deactivated: its conversations can be read, not answered."
        )
    if number_of(thread.numbers, thread.number.id) is None:
        return Composer("readonly", "This number was removed: its history can be read only.")
    if thread.window_open:
        return Composer("text")
    templates, error = await read_templates(state, business.tenant_id, thread.number)
    return Composer("template", templates=templates, templates_error=error)


async def _thread_page(
    request: Request,
    state: AppState,
    business: Business,
    number_id: str,
    contact_id: int,
    *,
    before: list[Any] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    q = _query(request)
    async with state.pool.acquire() as conn:
        thread = await read_thread(conn, business.tenant_id, number_id, contact_id, before)
        detail = await conn.fetchrow(Q.contact_detail, contact_id, business.tenant_id)
        listing = await read_listing(conn, business.tenant_id, thread.number, q, None, contact_id)
    composer = await _composer(state, business, thread)
    return views.html(
        request,
        "inbox.html",
        status_code=status_code,
        numbers=thread.numbers,
        number=thread.number,
        listing=listing,
        thread=thread,
        composer=composer,
        error=error,
        **panel_context(thread.number, thread.contact, detail),
    )


# Pages and fragments -----------------------------------------------------------------------
@views.page
async def inbox(request: Request) -> Response:
    """The conversations of one of the tenant's numbers (the first unless `?number=`)."""
    state, business = await sessions.business(request)
    q, cursor = _query(request), _list_cursor(request)
    wanted = request.query_params.get("number")
    async with state.pool.acquire() as conn:
        numbers = await read_numbers(conn, business.tenant_id)
        if wanted:
            if not DIGITS.fullmatch(wanted):
                raise NotFound("No number with that phone_number_id is yours.")
            await require_own_number(conn, business.tenant_id, wanted)
        chosen = wanted or (numbers[0].id if numbers else None)
        number = None if chosen is None else (number_of(numbers, chosen) or removed_number(chosen))
        listing = None
        if number is not None:
            listing = await read_listing(conn, business.tenant_id, number, q, cursor, None)
    return views.html(
        request,
        "inbox.html",
        numbers=numbers,
        number=number,
        listing=listing,
        thread=None,
        composer=None,
        error=None,
    )


@views.page
async def conversation_list(request: Request) -> Response:
    """The list alone (a live region's refresh)."""
    state, business = await sessions.business(request)
    number_id, q = _number_id(request), _query(request)
    current = whole_number(request.query_params.get("current", ""), BIGINT_MAX)
    async with state.pool.acquire() as conn:
        await require_own_number(conn, business.tenant_id, number_id)
        numbers = await read_numbers(conn, business.tenant_id)
        number = number_of(numbers, number_id) or removed_number(number_id)
        listing = await read_listing(
            conn, business.tenant_id, number, q, _list_cursor(request), current
        )
    return views.html(request, "inbox_list.html", number=number, listing=listing)


@views.page
async def thread(request: Request) -> Response:
    state, business = await sessions.business(request)
    before = decode_cursor(request, cursor_time, cursor_uuid, name="before")
    return await _thread_page(
        request, state, business, _number_id(request), _contact_id(request), before=before
    )


@views.page
async def thread_messages(request: Request) -> Response:
    """The thread's messages alone (a live region's refresh: a new message, a tick)."""
    state, business = await sessions.business(request)
    before = decode_cursor(request, cursor_time, cursor_uuid, name="before")
    async with state.pool.acquire() as conn:
        thread = await read_thread(
            conn, business.tenant_id, _number_id(request), _contact_id(request), before
        )
    return views.html(request, "inbox_messages.html", thread=thread)


@views.page
async def panel(request: Request) -> Response:
    """The contact panel alone (a live region's refresh: bot state, tags, notes, fields)."""
    state, business = await sessions.business(request)
    number_id, contact_id = _number_id(request), _contact_id(request)
    async with state.pool.acquire() as conn:
        contact = await conn.fetchrow(Q.inbox_contact, contact_id, business.tenant_id, number_id)
        if contact is None:
            raise NotFound("No conversation with that id on that number.")
        detail = await conn.fetchrow(Q.contact_detail, contact_id, business.tenant_id)
        numbers = await read_numbers(conn, business.tenant_id)
    number = number_of(numbers, number_id) or removed_number(number_id)
    return views.html(request, "inbox_panel.html", **panel_context(number, contact, detail))


@views.page
async def media(request: Request) -> Response:
    """A message's stored media (a downloaded inbound file, or one the console sent)."""
    state, business = await sessions.business(request)
    message_id = parse_uuid(str(request.path_params["message_id"]))
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(Q.inbox_media, message_id, business.tenant_id)
    if row is None:
        raise NotFound("No media for that message.")
    filename = row["filename"] if isinstance(row["filename"], str) else None
    return media_response(row, inline=True, filename=filename, headers=_MEDIA_HEADERS)


# Changes -----------------------------------------------------------------------------------
async def _own_contact(
    state: AppState, business: Business, number_id: str, contact_id: int
) -> asyncpg.Record:
    async with state.pool.acquire() as conn:
        contact = await conn.fetchrow(Q.inbox_contact, contact_id, business.tenant_id, number_id)
    if contact is None:
        raise NotFound("No conversation with that id on that number.")
    return contact


async def _attachment_form(
    request: Request, session: sessions.Session
) -> tuple[Mapping[str, str], formdata.Part | None]:
    """The composer's multipart fields and file, once the CSRF checks pass."""
    parts = await formdata.read_form(
        request.stream(), request.headers["content-type"], _SEND_LIMITS
    )
    csrf = parts.get("csrf")
    sessions.check_csrf(request, session, csrf.text if csrf else None)
    fields = {name: part.text for name, part in parts.items() if name != "file"}
    file = parts.get("file")
    # As for a urlencoded form (views.form): PostgreSQL text cannot hold NUL.
    if any("\x00" in text for text in [*fields.values(), (file and file.filename) or ""]):
        raise BadRequest("The form holds a NUL character.", "invalid_form")
    return fields, file if file is not None and (file.data or file.filename) else None


async def _send_text_or_file(
    state: AppState,
    business: Business,
    number: str,
    to: str,
    text: str,
    file: formdata.Part | None,
) -> None:
    if file is None:
        if not text:
            raise Unprocessable("Write a message or attach a file.", "missing_field")
        body = {"from": number, "to": to, "type": "text", "text": {"body": text}}
        await queue_message(state, business.caller, body)
        return
    kind = file_kind(file.content_type, file.data)
    upload = Upload(number, kind, False, File(file.data, file.content_type, file.filename))
    # (send holds one of the tenant's upload slots meanwhile)
    uploaded = await upload_to_meta(state, business.tenant_id, upload)
    content: dict[str, Any] = {"id": uploaded.media_id}
    captioned = kind != "audio" and bool(text)
    if captioned:
        content["caption"] = text
    if kind == "document":
        content["filename"] = uploaded.filename
    queued = await queue_message(
        state, business.caller, {"from": number, "to": to, "type": kind, kind: content}
    )
    async with state.pool.acquire() as conn:
        await conn.execute(
            Q.inbox_keep_sent_media,
            business.tenant_id,
            number,
            uploaded.media_id,
            queued.id,
            uploaded.mime_type,
            uploaded.sha256,
            len(uploaded.content),
            uploaded.content,
        )
    if text and not captioned:  # audio has no caption: the words follow it
        body = {"from": number, "to": to, "type": "text", "text": {"body": text}}
        await queue_message(state, business.caller, body)


def _template_body(number: str, to: str, fields: Mapping[str, str], stored: Any) -> dict[str, Any]:
    """A template send from the picker's form: its variables in the stored template's order."""
    choice = template_choice(stored)
    named = str(stored["parameter_format"] or "POSITIONAL").upper() == "NAMED"
    components: list[dict[str, Any]] = []
    for part in ("header", "body"):
        params = []
        for variable in choice.variables:
            if not variable.field.startswith(part + "."):
                continue
            value = fields.get(variable.field, "").strip()
            if not value:
                raise Unprocessable(f"Fill in {variable.label}.", "missing_field")
            name = variable.field.partition(".")[2]
            param = {"type": "text", "text": value}
            params.append(param | {"parameter_name": name} if named else param)
        if params:
            components.append({"type": part, "parameters": params})
    template: dict[str, Any] = {"name": stored["name"], "language": {"code": stored["language"]}}
    if components:
        template["components"] = components
    return {"from": number, "to": to, "type": "template", "template": template}


@views.page
async def send(request: Request) -> Response:
    """The composer: text (with an optional file) inside the window, a template outside it.
    Refusals (a closed window, a file Meta would not take) show on the thread with the API's
    message and status."""
    state, business = await sessions.business(request)
    number_id, contact_id = _number_id(request), _contact_id(request)
    if not formdata.is_multipart(request.headers.get("content-type", "")):
        form = await views.signed_form(request, business.session)
        return await _send(request, state, business, number_id, contact_id, form, None)
    # An attachment, up to 100 MB: refused before a byte of it is read when it could not go
    # (another site, a deactivated tenant, another tenant's conversation), and read holding one
    # of the tenant's upload slots, as POST /v1/media does (more at once: a 429).
    if not sessions.same_origin(request):
        sessions.check_csrf(request, business.session, None)
    business.caller.require_active()
    await _own_contact(state, business, number_id, contact_id)
    with state.upload_slots.hold(business.tenant_id):
        fields, file = await _attachment_form(request, business.session)
        return await _send(request, state, business, number_id, contact_id, fields, file)


async def _send(
    request: Request,
    state: AppState,
    business: Business,
    number_id: str,
    contact_id: int,
    fields: Mapping[str, str],
    file: formdata.Part | None,
) -> Response:
    contact = await _own_contact(state, business, number_id, contact_id)
    to = contact["wa_id"] or contact["user_id"]
    try:
        business.caller.require_active()
        if fields.get("template"):
            body = await _template_send(state, business, number_id, to, fields)
            await queue_message(state, business.caller, body)
        else:
            text = fields.get("body", "").strip()
            await _send_text_or_file(state, business, number_id, to, text, file)
    except ApiError as exc:
        return await _refused(request, state, business, number_id, contact_id, exc)
    return views.redirect(thread_url(number_id, contact_id))


async def _template_send(
    state: AppState, business: Business, number_id: str, to: str, fields: Mapping[str, str]
) -> dict[str, Any]:
    async with state.pool.acquire() as conn:
        number = number_of(await read_numbers(conn, business.tenant_id), number_id)
        stored = None
        if number is not None and number.waba_id:
            stored = await conn.fetchrow(
                Q.cached_template, number.waba_id, fields["template"], fields.get("language", "")
            )
    if stored is None:
        raise Unprocessable("That template is not one of this number's.", "template_not_found")
    return _template_body(number_id, to, fields, stored)


async def _change(
    request: Request,
) -> tuple[AppState, Business, str, int, asyncpg.Record, Mapping[str, str]]:
    """A form that changes a conversation: CSRF first, then the tenant's contact (404)."""
    state, business = await sessions.business(request)
    number_id, contact_id = _number_id(request), _contact_id(request)
    fields = await views.signed_form(request, business.session)
    contact = await _own_contact(state, business, number_id, contact_id)
    return state, business, number_id, contact_id, contact, fields


async def _refused(
    request: Request,
    state: AppState,
    business: Business,
    number_id: str,
    contact_id: int,
    exc: ApiError,
) -> Response:
    """The thread again, with the API's refusal and its status."""
    return await _thread_page(
        request, state, business, number_id, contact_id, error=exc.message, status_code=exc.status
    )


@views.page
async def pause_bot(request: Request) -> Response:
    """Pause the assistant here (`minutes`; empty: until resumed), as the API's pause does."""
    state, business, number_id, contact_id, contact, fields = await _change(request)
    try:
        business.caller.require_active()
        given = fields.get("minutes", "").strip()
        minutes = pause_minutes({"minutes": _number_or_text(given)} if given else {})
        async with state.pool.acquire() as conn, conn.transaction():
            label = contact["wa_id"] or contact["user_id"]
            await pause(conn, business.tenant_id, number_id, contact_id, label, minutes, "console")
    except ApiError as exc:
        return await _refused(request, state, business, number_id, contact_id, exc)
    return views.redirect(thread_url(number_id, contact_id))


def _number_or_text(given: str) -> float | str:
    """A form's number, or the text as typed (refused by the API's check with its message)."""
    try:
        return float(given)
    except ValueError:
        return given


@views.page
async def resume_bot(request: Request) -> Response:
    state, business, number_id, contact_id, contact, _ = await _change(request)
    try:
        business.caller.require_active()
        async with state.pool.acquire() as conn, conn.transaction():
            label = contact["wa_id"] or contact["user_id"]
            await resume(conn, business.tenant_id, number_id, contact_id, label)
    except ApiError as exc:
        return await _refused(request, state, business, number_id, contact_id, exc)
    return views.redirect(thread_url(number_id, contact_id))


def _field_lines(text: str) -> dict[str, str | None]:
    """`name=value` lines; an empty value removes the field."""
    given: dict[str, str | None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise Unprocessable(f"Fields, line {number}: write name=value.", "invalid_field")
        given[name.strip()] = value.strip() or None
    return given


@views.page
async def update_contact(request: Request) -> Response:
    """Tags (comma separated), notes and fields (name=value lines) as a whole, through the
    API's validation and update: fields left out are removed."""
    state, business, number_id, contact_id, contact, fields = await _change(request)
    try:
        business.caller.require_active()
        change = MemoryChange(
            tags=parse_tags([t for t in fields.get("tags", "").split(",") if t.strip()]),
            notes=parse_notes(fields.get("notes", "")),
            notes_given=True,
            fields=parse_field_changes(_field_lines(fields.get("fields", ""))),
            fields_replace=True,
        )
        async with state.pool.acquire() as conn, conn.transaction():
            label = contact["wa_id"] or contact["user_id"]
            await save_memory(conn, business.tenant_id, number_id, contact_id, label, change)
    except ApiError as exc:
        return await _refused(request, state, business, number_id, contact_id, exc)
    return views.redirect(thread_url(number_id, contact_id))
