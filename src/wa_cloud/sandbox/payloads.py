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
    template: Template,
    event: str,
    at: int,
    reason: str | None = "NONE",
    *,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`extra` carries the event's own object: `rejection_info` (REJECTED with INVALID_FORMAT),
    `disable_info` (DISABLED) or `other_info` (PAUSED, locked and unlocked)."""
    value: dict[str, Any] = {
        "event": event,
        "message_template_id": int(template.id),
        "message_template_name": template.name,
        "message_template_language": template.language,
        "reason": reason,
        "message_template_category": template.category,
    }
    value.update(extra or {})
    return envelope(template.waba_id, "message_template_status_update", value, at=at)


def template_quality(template: Template, previous: str, new: str, at: int) -> dict[str, Any]:
    value = {
        "previous_quality_score": previous,
        "new_quality_score": new,
        "message_template_id": int(template.id),
        "message_template_name": template.name,
        "message_template_language": template.language,
    }
    return envelope(template.waba_id, "message_template_quality_update", value, at=at)


def number_quality(
    number: Number, *, event: str, current_limit: str, old_limit: str | None, at: int
) -> dict[str, Any]:
    value: dict[str, Any] = {"display_phone_number": number.digits, "event": event}
    if old_limit is not None:
        # Meta names the previous tier only when the limit itself moved.
        value["old_limit"] = old_limit
    value["current_limit"] = current_limit
    return envelope(number.waba_id, "phone_number_quality_update", value, at=at)


def user_preferences(
    number: Number,
    *,
    wa_id: str,
    name: str,
    value: str,
    detail: str,
    category: str,
    at: int,
) -> dict[str, Any]:
    body = {
        "messaging_product": "whatsapp",
        "metadata": _metadata(number),
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "user_preferences": [
            {
                "wa_id": wa_id,
                "detail": detail,
                "category": category,
                "value": value,
                "timestamp": at,
            }
        ],
    }
    return envelope(number.waba_id, "user_preferences", body, at=at)
