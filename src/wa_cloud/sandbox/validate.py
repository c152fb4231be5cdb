"""The send body, checked the way Meta checks it before answering 200.

Top-level parameters fail with `(#100)`, a missing part of the message object with 131008 and
a value out of Meta's limits with 131009 (Meta reports a few length limits as `(#100)` too;
the exact code per field is not documented everywhere, the family is).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wa_cloud.sandbox.errors import bad_param, invalid, missing

SEND_TYPES = (
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "reaction",
    "template",
)
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
CAPTIONED = ("image", "video", "document")
INTERACTIVE_TYPES = (
    "button",
    "list",
    "cta_url",
    "flow",
    "product",
    "product_list",
    "location_request_message",
    "address_message",
)
_NON_DIGITS = re.compile(r"[\s+\-().]")


@dataclass(frozen=True, slots=True)
class Send:
    recipient: str  # what the client wrote in `to` / `recipient`
    user: str  # the key of the user: wa_id digits, or the user_id
    is_user_id: bool
    type: str
    message: dict[str, Any]
    biz_opaque_callback_data: str | None


def _text(obj: dict[str, Any], key: str, where: str, *, limit: int, required: bool = True) -> None:
    value = obj.get(key)
    if value is None:
        if required:
            raise missing(f"{where}['{key}']")
        return
    if not isinstance(value, str) or (required and not value):
        raise invalid(f"Param {where}['{key}'] must be a non-empty string.")
    if len(value) > limit:
        raise invalid(f"Param {where}['{key}'] must be at most {limit} characters long.")


def _dict(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        raise missing(f"{where}['{key}']")
    if not isinstance(value, dict):
        raise invalid(f"Param {where}['{key}'] must be an object.")
    return value


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        raise missing(f"{where}['{key}']")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise invalid(f"Param {where}['{key}'] must be a list of objects.")
    return value


def _url(value: Any, where: str) -> None:
    if not isinstance(value, str) or not re.match(r"https?://[^\s/]+", value):
        raise invalid(f"Param {where} is not a valid URL.")


def _check_text(obj: dict[str, Any]) -> None:
    body = obj.get("body")
    if body is None:
        raise missing("text['body']")
    if not isinstance(body, str) or not body:
        raise invalid("Param text['body'] must be a non-empty string.")
    if len(body) > 4096:
        raise bad_param("Param text['body'] must be at most 4096 characters long.")
    if "preview_url" in obj and not isinstance(obj["preview_url"], bool):
        raise invalid("Param text['preview_url'] must be a boolean.")


def _check_media(kind: str, obj: dict[str, Any], media_exists: Callable[[str], bool]) -> None:
    has_id, has_link = "id" in obj, "link" in obj
    if not has_id and not has_link:
        raise missing(f"{kind}['id'] or {kind}['link']")
    if has_id and has_link:
        raise invalid(f"Param {kind} must contain either id or link, not both.")
    if has_id and (not isinstance(obj["id"], str) or not media_exists(obj["id"])):
        raise bad_param(
            f"Param {kind}['id'] is not a valid WhatsApp Business Account media attachment ID."
        )
    if has_link:
        _url(obj["link"], f"{kind}['link']")
    if kind in CAPTIONED:
        _text(obj, "caption", kind, limit=1024, required=False)
    if kind == "document":
        _text(obj, "filename", kind, limit=240, required=False)
    if kind == "audio" and "voice" in obj and not isinstance(obj["voice"], bool):
        raise invalid("Param audio['voice'] must be a boolean.")


def _number(value: Any, where: str, bound: float) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise invalid(f"Param {where} must be a number.") from None
    if not -bound <= number <= bound:
        raise invalid(f"Param {where} must be between -{bound} and {bound}.")


def _check_location(obj: dict[str, Any]) -> None:
    for key, bound in (("latitude", 90.0), ("longitude", 180.0)):
        if key not in obj:
            raise missing(f"location['{key}']")
        _number(obj[key], f"location['{key}']", bound)


def _check_contacts(contacts: Any) -> None:
    if not isinstance(contacts, list) or not contacts:
        raise invalid("Param contacts must be a non-empty list.")
    for i, contact in enumerate(contacts):
        if not isinstance(contact, dict):
            raise invalid(f"Param contacts[{i}] must be an object.")
        name = _dict(contact, "name", f"contacts[{i}]")
        _text(name, "formatted_name", f"contacts[{i}]['name']", limit=512)


def _check_reaction(obj: dict[str, Any]) -> None:
    _text(obj, "message_id", "reaction", limit=512)
    emoji = obj.get("emoji")
    if emoji is None:
        raise missing("reaction['emoji']")
    if not isinstance(emoji, str):
        raise invalid("Param reaction['emoji'] must be a string (empty removes the reaction).")


def _check_buttons(action: dict[str, Any]) -> None:
    buttons = _list(action, "buttons", "interactive['action']")
    if not 1 <= len(buttons) <= 3:
        raise invalid("Interactive buttons count should be between 1 and 3.")
    ids: set[str] = set()
    titles: set[str] = set()
    for i, button in enumerate(buttons):
        where = f"interactive['action']['buttons'][{i}]"
        if button.get("type") != "reply":
            raise invalid(f"Param {where}['type'] must be 'reply'.")
        reply = _dict(button, "reply", where)
        _text(reply, "id", f"{where}['reply']", limit=256)
        _text(reply, "title", f"{where}['reply']", limit=20)
        if reply["id"] in ids or reply["title"] in titles:
            raise invalid("Interactive button ids and titles must be unique.")
        ids.add(reply["id"])
        titles.add(reply["title"])


def _check_list(action: dict[str, Any]) -> None:
    _text(action, "button", "interactive['action']", limit=20)
    sections = _list(action, "sections", "interactive['action']")
    if not 1 <= len(sections) <= 10:
        raise invalid("Interactive list sections count should be between 1 and 10.")
    row_ids: set[str] = set()
    for s, section in enumerate(sections):
        where = f"interactive['action']['sections'][{s}]"
        _text(section, "title", where, limit=24, required=len(sections) > 1)
        for r, row in enumerate(_list(section, "rows", where)):
            row_where = f"{where}['rows'][{r}]"
            _text(row, "id", row_where, limit=200)
            _text(row, "title", row_where, limit=24)
            _text(row, "description", row_where, limit=72, required=False)
            if row["id"] in row_ids:
                raise invalid("Interactive list row ids must be unique.")
            row_ids.add(row["id"])
    if not 1 <= len(row_ids) <= 10:
        raise invalid("Total row count exceed max allowed count: 10.")


def _check_interactive(obj: dict[str, Any]) -> None:
    kind = obj.get("type")
    if kind is None:
        raise missing("interactive['type']")
    if kind not in INTERACTIVE_TYPES:
        raise invalid(f"Param interactive['type'] must be one of {', '.join(INTERACTIVE_TYPES)}.")
    if kind != "product" or "body" in obj:
        _text(_dict(obj, "body", "interactive"), "text", "interactive['body']", limit=1024)
    header = obj.get("header")
    if header is not None:
        if not isinstance(header, dict) or header.get("type") not in (
            "text",
            "image",
            "video",
            "document",
        ):
            raise invalid("Param interactive['header']['type'] is not valid.")
        if header["type"] == "text":
            _text(header, "text", "interactive['header']", limit=60)
    if "footer" in obj:
        _text(_dict(obj, "footer", "interactive"), "text", "interactive['footer']", limit=60)
    action = _dict(obj, "action", "interactive")
    if kind == "button":
        _check_buttons(action)
    elif kind == "list":
        _check_list(action)
    elif kind == "cta_url":
        params = _dict(action, "parameters", "interactive['action']")
        _text(params, "display_text", "interactive['action']['parameters']", limit=20)
        _url(params.get("url"), "interactive['action']['parameters']['url']")
    elif kind == "flow":
        params = _dict(action, "parameters", "interactive['action']")
        where = "interactive['action']['parameters']"
        _text(params, "flow_cta", where, limit=30)
        if "flow_id" not in params and "flow_name" not in params:
            raise missing(f"{where}['flow_id']")
    elif kind in ("product", "product_list"):
        _text(action, "catalog_id", "interactive['action']", limit=64)
        if kind == "product":
            _text(action, "product_retailer_id", "interactive['action']", limit=256)
        else:
            _list(action, "sections", "interactive['action']")


def _check_template(obj: dict[str, Any]) -> None:
    _text(obj, "name", "template", limit=512)
    language = _dict(obj, "language", "template")
    _text(language, "code", "template['language']", limit=15)
    components = obj.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise invalid("Param template['components'] must be a list of objects.")


def _recipient(body: dict[str, Any]) -> tuple[str, str, bool]:
    to = body.get("to")
    user_id = body.get("recipient")
    if to is None and user_id is None:
        raise bad_param("The parameter to is required.")
    if to is None:
        if not isinstance(user_id, str) or not user_id:
            raise bad_param("Param recipient must be a user id string.")
        return user_id, user_id, True
    if isinstance(to, int) and not isinstance(to, bool):
        to = str(to)
    if not isinstance(to, str):
        raise bad_param("Param to must be a phone number string.")
    digits = _NON_DIGITS.sub("", to)
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise bad_param(f"Param to is not a valid phone number: {to!r}.")
    return to, digits, False


def validate_send(body: dict[str, Any], media_exists: Callable[[str], bool]) -> Send:
    if "messaging_product" not in body:
        raise bad_param("The parameter messaging_product is required.")
    if body["messaging_product"] != "whatsapp":
        raise bad_param('Param messaging_product must be "whatsapp".')
    if body.get("recipient_type", "individual") != "individual":
        raise bad_param('Param recipient_type must be "individual".')
    recipient, user, is_user_id = _recipient(body)
    kind = body.get("type", "text")  # Graph defaults the type to text
    if kind not in SEND_TYPES:
        raise bad_param(f"Param type must be one of {{{', '.join(SEND_TYPES).upper()}}}.")
    obj = body.get(kind)
    if obj is None:
        raise missing(kind)
    if kind == "contacts":
        _check_contacts(obj)
    elif not isinstance(obj, dict):
        raise invalid(f"Param {kind} must be an object.")
    elif kind == "text":
        _check_text(obj)
    elif kind in MEDIA_TYPES:
        _check_media(kind, obj, media_exists)
    elif kind == "location":
        _check_location(obj)
    elif kind == "reaction":
        _check_reaction(obj)
    elif kind == "interactive":
        _check_interactive(obj)
    elif kind == "template":
        _check_template(obj)
    context = body.get("context")
    if context is not None and (
        not isinstance(context, dict) or not isinstance(context.get("message_id"), str)
    ):
        raise invalid("Param context['message_id'] must be a message id string.")
    opaque = body.get("biz_opaque_callback_data")
    if opaque is not None and (not isinstance(opaque, str) or len(opaque) > 512):
        raise bad_param(
            "Param biz_opaque_callback_data must be a string of at most 512 characters."
        )
    return Send(recipient, user, is_user_id, kind, body, opaque)
