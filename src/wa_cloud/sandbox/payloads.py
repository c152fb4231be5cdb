"""The webhook bodies the sandbox posts, shaped exactly as Meta's (see `webhooks/` corpus)."""

from __future__ import annotations

from typing import Any

from wa_cloud.sandbox.state import Number, Template


def envelope(waba_id: str, field: str, value: dict[str, Any], *, at: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": waba_id}
    if at is not None:
        # Meta puts `time` on the entry of non-`messages` fields only.
        entry["time"] = at
    entry["changes"] = [{"value": value, "field": field}]
    return {"object": "whatsapp_business_account", "entry": [entry]}


def _metadata(number: Number) -> dict[str, str]:
    return {
        "display_phone_number": number.digits,
        "phone_number_id": number.phone_number_id,
    }


def status(
    number: Number,
    *,
    wamid: str,
    state: str,
    at: int,
    recipient: str,
    recipient_is_user_id: bool,
    pricing: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    biz_opaque_callback_data: str | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "status": state, "timestamp": str(at)}
    item["recipient_user_id" if recipient_is_user_id else "recipient_id"] = recipient
    if biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = biz_opaque_callback_data
    if pricing is not None:
        item["pricing"] = pricing
    if errors is not None:
        item["errors"] = errors
    value = {"messaging_product": "whatsapp", "metadata": _metadata(number), "statuses": [item]}
    return envelope(number.waba_id, "messages", value, at=None)


def inbound(
    number: Number,
    *,
    sender: str,
    name: str,
    message: dict[str, Any],
    user_id: str | None = None,
) -> dict[str, Any]:
    contact: dict[str, Any] = {"profile": {"name": name}, "wa_id": sender}
    if user_id is not None:
        contact["user_id"] = user_id
    value = {
        "messaging_product": "whatsapp",
        "metadata": _metadata(number),
        "contacts": [contact],
        "messages": [message],
    }
    return envelope(number.waba_id, "messages", value, at=None)


def template_status(
    template: Template, event: str, at: int, reason: str = "NONE"
) -> dict[str, Any]:
    value = {
        "event": event,
        "message_template_id": int(template.id),
        "message_template_name": template.name,
        "message_template_language": template.language,
        "reason": reason,
        "message_template_category": template.category,
    }
    return envelope(template.waba_id, "message_template_status_update", value, at=at)
