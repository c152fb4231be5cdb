"""`POST /{phone_number_id}/messages`: sends and mark-as-read, with Meta's rules in the order
Meta applies them, and the status webhooks an accepted message produces."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from wa_cloud.sandbox import payloads, templates, webhooks
from wa_cloud.sandbox.errors import GraphError, bad_param, invalid
from wa_cloud.sandbox.graph import GraphRequest
from wa_cloud.sandbox.rules import pricing, window_open
from wa_cloud.sandbox.state import Number, SandboxState, new_wamid
from wa_cloud.sandbox.validate import Send, validate_send


@dataclass(frozen=True, slots=True)
class Accepted:
    wamid: str
    send: Send
    template_category: str | None
    in_window: bool


def _mark_read(req: GraphRequest, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("messaging_product") != "whatsapp":
        raise bad_param('Param messaging_product must be "whatsapp".')
    if body.get("status") != "read":
        raise bad_param('Param status must be "read".')
    message_id = body.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise bad_param("The parameter message_id is required.")
    indicator = body.get("typing_indicator")
    if indicator is not None and indicator != {"type": "text"}:
        raise invalid('Param typing_indicator must be {"type": "text"}.')
    return {"success": True}


def _check_rates(state: SandboxState, number: Number, user: str) -> None:
    """Throughput, then pair rate; a refused send consumes neither budget."""
    now = time.monotonic()
    pair = state.pair_limiter(number.phone_number_id, user)
    if not number.limiter.allows(now):
        number.stats.throughput_rejected += 1
        raise GraphError(130429)
    if not pair.allows(now):
        number.stats.pair_rejected += 1
        raise GraphError(131056)
    number.limiter.take(now)
    pair.take(now)


def _schedule_statuses(state: SandboxState, number: Number, accepted: Accepted) -> None:
    config = state.config
    send = accepted.send
    common: dict[str, Any] = {
        "wamid": accepted.wamid,
        "recipient": send.user,
        "recipient_is_user_id": send.is_user_id,
        "biz_opaque_callback_data": send.biz_opaque_callback_data,
    }
    if not accepted.in_window and accepted.template_category is None:
        # Meta accepts a free-form message outside the window and fails it afterwards.
        failed = payloads.status(
            number,
            state="failed",
            at=int(state.now()),
            errors=[GraphError(131047).webhook_error()],
            **common,
        )
        webhooks.post(state, number.waba_id, failed, config.sent_delay)
        return
    price = pricing(accepted.template_category, accepted.in_window)
    steps = [("sent", config.sent_delay), ("delivered", config.delivered_delay)]
    if config.read_receipts:
        steps.append(("read", config.read_delay))
    delays = [delay for _, delay in steps]
    if config.reorder:
        state.rng.shuffle(delays)
    for (name, _), delay in zip(steps, delays, strict=True):
        body = payloads.status(
            number,
            state=name,
            at=int(state.now() + delay),
            # Meta prices a message on `sent` and `delivered`; `read` carries no pricing.
            pricing=price if name != "read" else None,
            **common,
        )
        webhooks.post(state, number.waba_id, body, delay)


async def send(req: GraphRequest) -> dict[str, Any]:
    state = req.state
    number = req.number(req.param("phone_number_id"))
    body = req.body()
    if "status" in body and "type" not in body and "to" not in body:
        return _mark_read(req, body)
    fault = state.take_fault(number.phone_number_id)
    if fault is not None:
        number.stats.faults += 1
        if fault.code is not None:
            # A refusal, optionally slow (a 5xx after a long wait, as an overloaded Graph does).
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            raise GraphError(fault.code, status=fault.http_status)
    message = validate_send(body, lambda media_id: _media_of(state, number, media_id))
    if message.user == number.digits:
        raise GraphError(131021)
    category = None
    if message.type == "template":
        category = templates.check_send(state, number, body["template"]).category
    _check_rates(state, number, message.user)
    now = state.now()
    accepted = Accepted(
        wamid=new_wamid(),
        send=message,
        template_category=category,
        in_window=window_open(state.last_inbound(number.phone_number_id, message.user), now),
    )
    number.stats.accept(now)
    _schedule_statuses(state, number, accepted)
    contact = {"input": message.recipient}
    contact["user_id" if message.is_user_id else "wa_id"] = message.user
    response = {
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [{"id": accepted.wamid, "message_status": "accepted"}],
    }
    if fault is not None and fault.delay_seconds is not None:
        # Accepted and recorded, but the answer comes late: the client's timeout fires and it
        # cannot know the message went out (the case idempotent retries must survive).
        await asyncio.sleep(fault.delay_seconds)
    return response


def _media_of(state: SandboxState, number: Number, media_id: str) -> bool:
    media = state.media.get(media_id)
    return (
        media is not None
        and state.numbers.get(media.phone_number_id) is not None
        and (state.numbers[media.phone_number_id].waba_id == number.waba_id)
    )
