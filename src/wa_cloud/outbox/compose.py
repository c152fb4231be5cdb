"""A send request into the exact body Meta receives, checked against Meta's limits first.

The API takes Meta's own send shapes (`"type": "text", "text": {...}`); we check what Meta
would refuse, so a bad request is a clear 422 here and never a paid-for failure there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wa_cloud.errors import Unprocessable

SEND_TYPES = frozenset(
    {
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
    }
)
INTERACTIVE_TYPES = frozenset(
    {
        "button",
        "list",
        "cta_url",
        "flow",
        "product",
        "product_list",
        "location_request_message",
        "address_message",
    }
)
MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
_CAPTIONED = frozenset({"image", "video", "document"})
_USER_ID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9.]+")
_WA_ID = re.compile(r"\+?[0-9]{6,20}")


def _fail(message: str, code: str = "invalid_message") -> Unprocessable:
    return Unprocessable(message, code)


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"'{where}' must be an object.")
    return value


def _text(value: Any, where: str, *, limit: int, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"'{where}' must be a non-empty string.")
    if len(value) > limit:
        raise _fail(f"'{where}' is longer than {limit} characters.", "text_too_long")
    return value


def _check_media(kind: str, media: Mapping[str, Any]) -> None:
    has_id, has_link = "id" in media, "link" in media
    if has_id == has_link:
        raise _fail(f"'{kind}' needs exactly one of 'id' or 'link'.")
    if has_link and not str(media["link"]).startswith(("https://", "http://")):
        raise _fail(f"'{kind}.link' must be an http(s) URL.")
    if "caption" in media:
        if kind not in _CAPTIONED:
            raise _fail(f"'{kind}' cannot have a caption.")
        _text(media["caption"], f"{kind}.caption", limit=1024)
    if "filename" in media and kind != "document":
        raise _fail(f"only a document has a filename, not '{kind}'.")


def _check_interactive(body: Mapping[str, Any]) -> None:
    kind = body.get("type")
    _object(body.get("action"), "interactive.action")
    action = body["action"]
    if kind not in INTERACTIVE_TYPES:
        raise _fail(f"'interactive.type' {kind!r} is not one Meta sends.")
    if kind in ("button", "list", "cta_url", "flow"):
        _text(
            _object(body.get("body"), "interactive.body").get("text"),
            "interactive.body.text",
            limit=1024,
        )
    if kind == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise _fail("an interactive button message has 1 to 3 buttons.")
        titles = [
            _text(
                _object(_object(b, "button").get("reply"), "button.reply").get("title"),
                "button title",
                limit=20,
            )
            for b in buttons
        ]
        if len(set(titles)) != len(titles):
            raise _fail("button titles must be unique.")
    elif kind == "list":
        _text(action.get("button"), "interactive.action.button", limit=20)
        sections = action.get("sections")
        if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
            raise _fail("an interactive list has 1 to 10 sections.")
        rows = [r for s in sections for r in (_object(s, "section").get("rows") or [])]
        if not 1 <= len(rows) <= 10:
            raise _fail("an interactive list has 1 to 10 rows in all.")
        for row in rows:
            _object(row, "row")
            _text(row.get("id"), "row.id", limit=200)
            _text(row.get("title"), "row.title", limit=24)
            _text(row.get("description"), "row.description", limit=72, required=False)


def _check_template(template: Mapping[str, Any]) -> None:
    _text(template.get("name"), "template.name", limit=512)
    language = _object(template.get("language"), "template.language")
    _text(language.get("code"), "template.language.code", limit=15)
    components = template.get("components", [])
    if not isinstance(components, list):
        raise _fail("'template.components' must be a list.")
    for component in components:
        _object(component, "template component")


def _check(kind: str, body: Mapping[str, Any]) -> None:
    if kind == "text":
        _text(body.get("body"), "text.body", limit=4096)
        if "preview_url" in body and not isinstance(body["preview_url"], bool):
            raise _fail("'text.preview_url' must be true or false.")
    elif kind in MEDIA_TYPES:
        _check_media(kind, body)
    elif kind == "location":
        for key, low, high in (("latitude", -90, 90), ("longitude", -180, 180)):
            value = body.get(key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (low <= value <= high)
            ):
                raise _fail(f"'location.{key}' must be a number from {low} to {high}.")
    elif kind == "reaction":
        _text(body.get("message_id"), "reaction.message_id", limit=200)
        if not isinstance(body.get("emoji", ""), str):
            raise _fail("'reaction.emoji' must be a string (empty removes the reaction).")
    elif kind == "interactive":
        _check_interactive(body)
    elif kind == "template":
        _check_template(body)


@dataclass(frozen=True, slots=True)
class Composed:
    kind: str
    recipient: str
    body: dict[str, Any]  # exactly what is POSTed to /{phone_number_id}/messages

    @property
    def is_template(self) -> bool:
        return self.kind == "template"


def compose(request: Mapping[str, Any]) -> Composed:
    """Validate a `/v1/messages` request and build Meta's body (without the sender)."""
    recipient = request.get("to")
    if not isinstance(recipient, str) or not (
        _WA_ID.fullmatch(recipient) or _USER_ID.fullmatch(recipient)
    ):
        raise _fail(
            "'to' must be a WhatsApp id (digits) or a user id (CC.xxxx).", "invalid_recipient"
        )
    kind = request.get("type")
    if kind not in SEND_TYPES:
        raise _fail(f"'type' must be one of: {', '.join(sorted(SEND_TYPES))}.", "invalid_type")
    content = request.get(kind)
    if kind == "contacts":
        if not isinstance(content, list) or not content:
            raise _fail("'contacts' must be a non-empty list.")
        for card in content:
            _object(_object(card, "contact").get("name"), "contact.name")
    else:
        _check(kind, _object(content, kind))
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    # Usernames (2026): a BSUID is addressed with "recipient" instead of "to".
    if _USER_ID.fullmatch(recipient):
        body["recipient"] = recipient
    else:
        body["to"] = recipient.lstrip("+")
    body["type"] = kind
    body[kind] = content
    context = request.get("context")
    if context is not None:
        message_id = _object(context, "context").get("message_id")
        _text(message_id, "context.message_id", limit=200)
        body["context"] = {"message_id": message_id}
    callback = request.get("biz_opaque_callback_data")
    if callback is not None:
        body["biz_opaque_callback_data"] = _text(callback, "biz_opaque_callback_data", limit=512)
    return Composed(kind=kind, recipient=recipient.lstrip("+"), body=body)


def template_request(recipient: str, template: Mapping[str, Any]) -> Composed:
    """The fallback template as a send of its own, to the same recipient."""
    return compose({"to": recipient, "type": "template", "template": template})
