"""A web-session gateway's webhook (Evolution API v2) into the same typed events as Meta's.

Messages are rewritten in Meta's message shape (`from`, `id`, `type`, `text.body`,
`image.id`...), so that storage, media, the window-free sender and the assistant read one
shape; the gateway's own object is kept under `gateway`. The business's own messages
(`fromMe`: typed on the phone) become `EchoMessage`s; acks become statuses; the session's
news (`connection.update`, `qrcode.updated`) field events of field `websession`.

Phone JIDs follow the contract's @lid rule: the first of `remoteJid`, `remoteJidAlt`,
`senderPn` that is a phone JID (`participant...` in groups); a chat known only by its LID keeps
the LID as its identifier, since sends to a LID are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from wa_cloud.events import (
    Contact,
    Delivery,
    EchoMessage,
    Event,
    FieldEvent,
    InboundMessage,
    MessageType,
    Route,
    StatusKind,
    StatusUpdate,
)
from wa_cloud.inbound.parse import (
    InvalidDelivery,
    epoch_time,
    load_document,
    mapping_of,
    message_text,
)
from wa_cloud.providers.websession import jid_digits

SESSION_FIELD = "websession"
# The gateway's acks in Meta's words; statuses only ever move forward (as Meta's do).
_ACKS = {
    "SERVER_ACK": "sent",
    "DELIVERY_ACK": "delivered",
    "READ": "read",
    "PLAYED": "played",
    "ERROR": "failed",
}
_MEDIA = {
    "imageMessage": "image",
    "videoMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "documentWithCaptionMessage": "document",
    "stickerMessage": "sticker",
}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: object) -> datetime | None:
    if isinstance(value, Mapping):  # a protobuf Long as {"low", "high"}
        value = value.get("low")
    return epoch_time(value)


def _phone(key: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        digits = jid_digits(_str(key.get(name)))
        if digits:
            return digits
    return None


def _party(key: Mapping[str, Any], name: str | None) -> Contact | None:
    """Who the chat is with (for a group: who wrote), by phone when the gateway gives one."""
    remote = _str(key.get("remoteJid")) or ""
    if remote.endswith("@g.us"):
        phone = _phone(key, "participant", "participantAlt", "participantPn")
        lids: tuple[str, ...] = ("participant", "participantAlt")
    else:
        phone = _phone(key, "remoteJid", "remoteJidAlt", "senderPn")
        lids = ("remoteJid", "remoteJidAlt", "previousRemoteJid")
    lid = next((v for n in lids if (v := _str(key.get(n))) and v.endswith("@lid")), None)
    if phone is None and lid is None:
        return None
    # The LID is kept beside the phone (user_id): the same person under both identifiers.
    return Contact(wa_id=phone, user_id=lid, name=name)


def _content(message: Mapping[str, Any], message_id: str) -> tuple[str, dict[str, Any]]:
    """The message's type and body in Meta's shape."""
    if text := _str(message.get("conversation")):
        return "text", {"body": text}
    extended = mapping_of(message.get("extendedTextMessage"))
    if text := _str(extended.get("text")):
        return "text", {"body": text}
    for name, kind in _MEDIA.items():
        media = mapping_of(message.get(name))
        if name == "documentWithCaptionMessage":
            media = mapping_of(mapping_of(media.get("message")).get("documentMessage"))
        if media:
            body: dict[str, Any] = {"id": message_id}
            if mime := _str(media.get("mimetype")):
                body["mime_type"] = mime
            if caption := _str(media.get("caption")):
                body["caption"] = caption
            if kind == "document" and (filename := _str(media.get("fileName"))):
                body["filename"] = filename
            if kind == "audio":
                body["voice"] = media.get("ptt") is True
            return kind, body
    location = mapping_of(message.get("locationMessage"))
    if location:
        return "location", {
            "latitude": location.get("degreesLatitude"),
            "longitude": location.get("degreesLongitude"),
            "name": _str(location.get("name")),
            "address": _str(location.get("address")),
        }
    reaction = mapping_of(message.get("reactionMessage"))
    if reaction:
        target = _str(mapping_of(reaction.get("key")).get("id"))
        return "reaction", {"message_id": target, "emoji": _str(reaction.get("text")) or ""}
    return "unsupported", {}


def _message(route: Route, data: Mapping[str, Any]) -> Event:
    key = mapping_of(data.get("key"))
    message_id = _str(key.get("id"))
    from_me = key.get("fromMe") is True
    party = _party(key, None if from_me else _str(data.get("pushName")))
    remote = _str(key.get("remoteJid")) or ""
    if message_id is None or party is None:
        return FieldEvent(route, SESSION_FIELD, "unreadable_message", None, dict(data))
    if from_me and remote.endswith("@g.us"):
        # The business writing in a group: kept in the event log, not a conversation.
        return FieldEvent(route, SESSION_FIELD, "group_message_from_me", None, dict(data))
    kind, body = _content(mapping_of(data.get("message")), message_id)
    timestamp = _time(data.get("messageTimestamp"))
    meta: dict[str, Any] = {
        "from": party.wa_id or party.user_id,
        "id": message_id,
        "timestamp": None if timestamp is None else str(int(timestamp.timestamp())),
        "type": kind,
        kind: body,
        "gateway": dict(data),
    }
    if remote.endswith("@g.us"):
        meta["group_id"] = remote  # stored, never answered
    stanza = _str(mapping_of(data.get("contextInfo")).get("stanzaId"))
    if stanza:
        meta["context"] = {"id": stanza}
    text = message_text(meta)
    if from_me:
        return EchoMessage(route, message_id, kind, party, timestamp, text, meta)
    return InboundMessage(
        route=route,
        wamid=message_id,
        type=kind,
        kind=MessageType.parse(kind),
        sender=party,
        timestamp=timestamp,
        text=text,
        context_wamid=stanza,
        raw=meta,
    )


def _status(route: Route, data: Mapping[str, Any]) -> Event:
    message_id = _str(data.get("keyId")) or _str(mapping_of(data.get("key")).get("id"))
    ack = _str(data.get("status"))
    if message_id is None or ack is None or data.get("fromMe") is False:
        # Acks of what customers sent (our own reads) say nothing about our messages.
        return FieldEvent(route, SESSION_FIELD, "messages.update", None, dict(data))
    status = _ACKS.get(ack, ack.lower())
    recipient = jid_digits(_str(data.get("remoteJid")))
    errors = ({"code": 0, "title": "The gateway reported an error"},) if status == "failed" else ()
    return StatusUpdate(
        route=route,
        wamid=message_id,
        status=status,
        kind=StatusKind.parse(status),
        timestamp=None,
        recipient_id=recipient,
        recipient_user_id=None,
        errors=errors,
        pricing=None,
        conversation=None,
        biz_opaque_callback_data=None,
        raw=dict(data),
    )


def parse_gateway_delivery(body: bytes, phone_number_id: str) -> Delivery:
    """One gateway webhook body, for the web-session number it was posted for."""
    document = load_document(body)
    if not isinstance(document, Mapping) or not isinstance(document.get("event"), str):
        raise InvalidDelivery("not_gateway_event", "JSON body has no 'event' name.")
    route = Route(phone_number_id=phone_number_id, display_phone_number=None, waba_id=None)
    instance = document.get("instance")
    origin = instance if isinstance(instance, str) else ""
    event = document["event"].lower().replace("_", ".")
    data = document.get("data")
    if event == "messages.upsert":
        # One message per event (some versions send a list under `messages`).
        found = data.get("messages") if isinstance(data, Mapping) else data
        items = found if isinstance(found, list) else [data]
        return Delivery(tuple(_message(route, mapping_of(d)) for d in items), origin)
    if event == "messages.update":
        items = data if isinstance(data, list) else [data]
        return Delivery(tuple(_status(route, mapping_of(d)) for d in items), origin)
    # `date_time` is kept: it tells a second `open` (after a drop) from a redelivery of the
    # first, which the event log would otherwise take for a duplicate.
    raw = {
        "event": event,
        "instance": document.get("instance"),
        "date_time": document.get("date_time"),
        "data": data,
    }
    return Delivery((FieldEvent(route, SESSION_FIELD, event, None, raw),), origin)
