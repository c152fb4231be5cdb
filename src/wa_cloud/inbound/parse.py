"""Raw webhook bytes into typed events: every entry, change, message and status.

A body that is not JSON, or not a WhatsApp envelope, raises `InvalidDelivery` (the worker
quarantines it with the reason). Inside a valid envelope nothing raises: an element we cannot
read becomes a `FieldEvent` of kind `unreadable_*` carrying the raw object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from wa_cloud.errors import WaCloudError
from wa_cloud.events import (
    Contact,
    Delivery,
    Event,
    FieldEvent,
    InboundMessage,
    MessageType,
    Route,
    StatusKind,
    StatusUpdate,
)
from wa_cloud.jsonsafe import MAX_DEPTH, may_hold_unstorable, storable, text_depth_within


class InvalidDelivery(WaCloudError):
    """A signed body that is not a WhatsApp webhook; `code` is the machine reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _str(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def epoch_time(value: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def mapping_of(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def message_text(message: Mapping[str, Any]) -> str | None:
    """The words a person would read in this message: body, caption, title or summary."""
    kind = message.get("type")
    body = mapping_of(message.get(kind)) if isinstance(kind, str) else {}
    match kind:
        case "text":
            return _str(body.get("body"))
        case "image" | "video" | "sticker" | "audio":
            return _str(body.get("caption"))
        case "document":
            return _str(body.get("caption")) or _str(body.get("filename"))
        case "interactive":
            kind = body.get("type")
            reply = mapping_of(body.get(kind)) if isinstance(kind, str) else {}
            return _str(reply.get("title")) or _str(reply.get("body"))
        case "button":
            return _str(body.get("text"))
        case "reaction":
            return _str(body.get("emoji"))
        case "location":
            parts = [_str(body.get("name")), _str(body.get("address"))]
            return ", ".join(p for p in parts if p) or None
        case "order" | "system":
            return _str(body.get("text")) or _str(body.get("body"))
        case "contacts":
            names = [
                _str(mapping_of(c.get("name")).get("formatted_name"))
                for c in _list(message.get("contacts"))
                if isinstance(c, Mapping)
            ]
            return ", ".join(n for n in names if n) or None
        case "edit":
            return message_text(mapping_of(body.get("message")))
    return None


def _contact(raw: Mapping[str, Any]) -> Contact:
    profile = mapping_of(raw.get("profile"))
    return Contact(
        wa_id=_str(raw.get("wa_id")),
        user_id=_str(raw.get("user_id")),
        parent_user_id=_str(raw.get("parent_user_id")),
        username=_str(profile.get("username")),
        name=_str(profile.get("name")),
    )


def _sender(message: Mapping[str, Any], contacts: list[Contact]) -> Contact:
    wa_id = _str(message.get("from"))
    user_id = _str(message.get("from_user_id"))
    for contact in contacts:
        if (wa_id and contact.wa_id == wa_id) or (user_id and contact.user_id == user_id):
            return Contact(
                wa_id=wa_id or contact.wa_id,
                user_id=user_id or contact.user_id,
                parent_user_id=_str(message.get("from_parent_user_id")) or contact.parent_user_id,
                username=contact.username,
                name=contact.name,
            )
    return Contact(
        wa_id=wa_id, user_id=user_id, parent_user_id=_str(message.get("from_parent_user_id"))
    )


def _message(route: Route, raw: Mapping[str, Any], contacts: list[Contact]) -> Event:
    wamid = _str(raw.get("id"))
    sender = _sender(raw, contacts)
    kind_raw = _str(raw.get("type")) or "unknown"
    if wamid is None or (sender.wa_id is None and sender.user_id is None):
        return FieldEvent(route, "messages", "unreadable_message", None, raw)
    context = mapping_of(raw.get("context"))
    return InboundMessage(
        route=route,
        wamid=wamid,
        type=kind_raw,
        kind=MessageType.parse(kind_raw),
        sender=sender,
        timestamp=epoch_time(raw.get("timestamp")),
        text=message_text(raw),
        context_wamid=_str(context.get("id")),
        raw=raw,
    )


def _status(route: Route, raw: Mapping[str, Any]) -> Event:
    wamid = _str(raw.get("id"))
    status = _str(raw.get("status"))
    if wamid is None or status is None:
        return FieldEvent(route, "messages", "unreadable_status", None, raw)
    pricing = raw.get("pricing")
    conversation = raw.get("conversation")
    callback = raw.get("biz_opaque_callback_data")
    return StatusUpdate(
        route=route,
        wamid=wamid,
        status=status,
        kind=StatusKind.parse(status),
        timestamp=epoch_time(raw.get("timestamp")),
        recipient_id=_str(raw.get("recipient_id")),
        recipient_user_id=_str(raw.get("recipient_user_id")),
        errors=tuple(e for e in _list(raw.get("errors")) if isinstance(e, Mapping)),
        pricing=pricing if isinstance(pricing, Mapping) else None,
        conversation=conversation if isinstance(conversation, Mapping) else None,
        biz_opaque_callback_data=None if callback is None else str(callback),
        raw=raw,
    )


def _field_kind(field: str, value: Mapping[str, Any]) -> str:
    # Template, account and quality updates name what happened in `event`.
    event = value.get("event") or value.get("current_limit") or value.get("decision")
    return str(event) if isinstance(event, str | int) else field


def _change(entry: Mapping[str, Any], change: Mapping[str, Any]) -> Iterator[Event]:
    field = _str(change.get("field")) or "unknown"
    value = mapping_of(change.get("value"))
    metadata = mapping_of(value.get("metadata"))
    waba_id = _str(entry.get("id"))
    route = Route(
        phone_number_id=_str(metadata.get("phone_number_id")),
        display_phone_number=_str(metadata.get("display_phone_number")),
        waba_id=waba_id,
    )
    if field != "messages" or not isinstance(change.get("value"), Mapping):
        yield FieldEvent(
            route, field, _field_kind(field, value), epoch_time(entry.get("time")), dict(change)
        )
        return
    contacts = [_contact(c) for c in _list(value.get("contacts")) if isinstance(c, Mapping)]
    for raw in _list(value.get("messages")):
        if isinstance(raw, Mapping):
            yield _message(route, raw, contacts)
        else:
            yield FieldEvent(route, field, "unreadable_message", None, {"element": raw})
    for raw in _list(value.get("statuses")):
        if isinstance(raw, Mapping):
            yield _status(route, raw)
        else:
            yield FieldEvent(route, field, "unreadable_status", None, {"element": raw})
    if value.get("errors"):
        yield FieldEvent(route, field, "errors", epoch_time(entry.get("time")), dict(value))
    known = {"messaging_product", "metadata", "contacts", "messages", "statuses", "errors"}
    if value.keys() - known:
        # A key Meta adds under the messages field: keep the whole value.
        yield FieldEvent(route, field, "other", epoch_time(entry.get("time")), dict(value))
    elif not (value.get("messages") or value.get("statuses") or value.get("errors")):
        yield FieldEvent(route, field, "empty", epoch_time(entry.get("time")), dict(value))


def parse_envelope(document: object) -> Delivery:
    if not isinstance(document, Mapping) or "entry" not in document:
        raise InvalidDelivery("not_whatsapp_envelope", "JSON body has no 'entry' list.")
    if document.get("object") != "whatsapp_business_account":
        raise InvalidDelivery(
            "not_whatsapp_envelope",
            f"'object' is {document.get('object')!r}, not 'whatsapp_business_account'.",
        )
    entries = document.get("entry")
    if not isinstance(entries, list):
        raise InvalidDelivery("not_whatsapp_envelope", "'entry' is not a list.")
    events: list[Event] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise InvalidDelivery("not_whatsapp_envelope", "an 'entry' element is not an object.")
        for change in _list(entry.get("changes")):
            if isinstance(change, Mapping):
                events.extend(_change(entry, change))
    return Delivery(tuple(events))


def load_document(body: bytes) -> object:
    """A webhook body as JSON we can store: bounded in depth, unstorable text replaced."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidDelivery("invalid_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidDelivery("invalid_json", "body nests too deep to read") from None
    if not text_depth_within(body, document):
        raise InvalidDelivery("invalid_json", f"body nests deeper than {MAX_DEPTH} levels")
    if may_hold_unstorable(body):
        # A text with U+0000 or a lone surrogate is stored with U+FFFD in its place (the raw
        # body stays untouched in the delivery), instead of failing the whole delivery.
        document = storable(document)
    return document


def parse_delivery(body: bytes) -> Delivery:
    return parse_envelope(load_document(body))
