"""The control API under `/_sandbox/` (not Meta's): seed numbers, tokens, templates and codes,
play the customer (inbound messages, marketing opt-outs), play Meta's own decisions (template
status and quality, number quality and messaging limit), inject faults, and read what the
sandbox saw.

Errors here use the project's own shape, `{"error": {"code", "message"}}`, so a test can tell
a mistake in its set-up from a Meta refusal.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wa_cloud.sandbox import payloads, templates, webhooks
from wa_cloud.sandbox.rules import throughput_limiter
from wa_cloud.sandbox.state import (
    CodeGrant,
    Fault,
    Number,
    SandboxState,
    Template,
    new_id,
    new_wamid,
)
from wa_cloud.sandbox.templates import CATEGORIES, QUALITY_SCORES, REASONS, STATUSES

# Meta's messaging limit tiers, lowest first (the order decides UPGRADE or DOWNGRADE).
LIMIT_TIERS = (
    "TIER_NOT_SET",
    "TIER_50",
    "TIER_250",
    "TIER_1K",
    "TIER_2K",
    "TIER_10K",
    "TIER_100K",
    "TIER_UNLIMITED",
)
NUMBER_QUALITY = ("GREEN", "YELLOW", "RED", "UNKNOWN", "NA")
NUMBER_EVENTS = ("DOWNGRADE", "UPGRADE", "FLAGGED", "UNFLAGGED", "ONBOARDING", "THROUGHPUT_UPGRADE")
# Worse quality is a larger number; UNKNOWN and NA rank as nothing and need an explicit event.
_QUALITY_RANK = {"GREEN": 0, "YELLOW": 1, "RED": 2}


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise ControlError("The body must be JSON.") from None
    if not isinstance(body, dict):
        raise ControlError("The body must be a JSON object.")
    return body


def _str(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ControlError(f"{name} is required.")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ControlError(f"{name} must be a non-empty string.")
    return value


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = _str(body, name, required=False)
    if value is None:
        return None
    if value.upper() not in allowed:
        raise ControlError(f"{name} must be one of {', '.join(allowed)}.")
    return value.upper()


def _int(body: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ControlError(f"{name} must be a non-negative integer.")
    return value


def control(
    handler: Callable[[Request, SandboxState], Awaitable[Any]], status: int = 200
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request, _state(request))
        except ControlError as exc:
            error = {"code": "bad_request", "message": exc.message}
            return JSONResponse({"error": error}, status_code=exc.status)
        return JSONResponse(result, status_code=status)

    return endpoint


def _number_json(number: Number) -> dict[str, Any]:
    return {
        "phone_number_id": number.phone_number_id,
        "waba_id": number.waba_id,
        "display_phone_number": number.display_phone_number,
        "verified_name": number.verified_name,
        "throughput_mps": number.throughput_mps,
        "registered": number.registered,
        "quality_rating": number.quality_rating,
        "messaging_limit_tier": number.messaging_limit_tier,
    }


async def add_number(request: Request, state: SandboxState) -> dict[str, Any]:
    body = await _body(request)
    pnid = _str(body, "phone_number_id")
    waba_id = _str(body, "waba_id")
    token = _str(body, "access_token")
    assert pnid and waba_id and token
    mps = _int(body, "throughput_mps", state.config.default_throughput_mps)
    if not mps:
        raise ControlError("throughput_mps must be at least 1.")
    display = _str(body, "display_phone_number", required=False) or "1555" + pnid[-7:].zfill(7)
    pin = _str(body, "pin", required=False)
    number = Number(
        phone_number_id=pnid,
        waba_id=waba_id,
        display_phone_number=display,
        verified_name=_str(body, "verified_name", required=False) or "Sandbox Business",
        throughput_mps=mps,
        limiter=throughput_limiter(mps),
        pin=pin,
        registered=bool(body.get("registered", False)),
        quality_rating=_choice(body, "quality_rating", NUMBER_QUALITY) or "GREEN",
        messaging_limit_tier=_choice(body, "messaging_limit_tier", LIMIT_TIERS) or "TIER_1K",
    )
    old = state.numbers.get(pnid)
    if old is not None:
        # The number is re-seeded: keep its counters, and its old token stops reaching it.
        number.stats = old.stats
        for grant in state.tokens.values():
            grant.numbers.discard(pnid)
    state.add_number(number, token)
    return _number_json(number)


async def list_numbers(request: Request, state: SandboxState) -> dict[str, Any]:
    return {"data": [_number_json(n) for n in state.numbers.values()]}


async def add_template(request: Request, state: SandboxState) -> dict[str, Any]:
    body = await _body(request)
    waba_id, name, language = (_str(body, k) for k in ("waba_id", "name", "language"))
    assert waba_id and name and language
    category = str(body.get("category", "UTILITY")).upper()
    if category not in CATEGORIES:
        raise ControlError(f"category must be one of {', '.join(CATEGORIES)}.")
    components = body.get("components")
    if components is None and isinstance(body.get("body"), str):
        # A shortcut for tests: just the body text.
        components = [{"type": "BODY", "text": body["body"]}]
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise ControlError("components (a list) or body (the text) is required.")
    existing = state.find_template(waba_id, name, language)
    template = Template(
        id=existing.id if existing else new_id(),
        waba_id=waba_id,
        name=name,
        language=language,
        category=category,
        components=components,
        parameter_format=str(body.get("parameter_format", "POSITIONAL")).upper(),
        status=str(body.get("status", "APPROVED")).upper(),
        rejected_reason=_choice(body, "rejected_reason", REASONS) or "NONE",
        quality_score=_choice(body, "quality_score", QUALITY_SCORES) or "UNKNOWN",
    )
    state.templates[template.id] = template
    return template.as_json()


async def _deliver(state: SandboxState, waba_id: str, payload: dict[str, Any]) -> int | None:
    """Post now and wait, so a test that awaited the control call can look at the app."""
    url = webhooks.target(state, waba_id)
    return await webhooks.deliver(state, url, webhooks.encode(payload)) if url else None


def _find_template(state: SandboxState, body: dict[str, Any]) -> Template:
    template_id = _str(body, "template_id", required=False)
    if template_id is not None:
        found = state.templates.get(template_id)
    else:
        waba_id, name, language = (_str(body, k) for k in ("waba_id", "name", "language"))
        assert waba_id and name and language
        found = state.find_template(waba_id, name, language)
    if found is None:
        raise ControlError("no such template.", 404)
    return found


async def template_state(request: Request, state: SandboxState) -> dict[str, Any]:
    """Meta decides about a template (`template_id`, or `waba_id` + `name` + `language`):
    `status` (with `reason`, and optionally `event`, `title`, `description` for the webhook's
    `other_info`) and/or `quality_score`. Posts `message_template_status_update` and/or
    `message_template_quality_update` before answering."""
    body = await _body(request)
    template = _find_template(state, body)
    status = _choice(body, "status", STATUSES)
    score = _choice(body, "quality_score", QUALITY_SCORES)
    if status is None and score is None:
        raise ControlError("status or quality_score is required.")
    reason = _choice(body, "reason", REASONS)
    title, description = (
        _str(body, "title", required=False),
        _str(body, "description", required=False),
    )
    event = _str(body, "event", required=False)
    result: dict[str, Any] = {}
    if status is not None:
        payload = templates.set_status(
            state,
            template,
            status,
            reason,
            event=event.upper() if event else None,
            title=title,
            description=description,
        )
        result["status_webhook"] = payload
        result["status_webhook_status"] = await _deliver(state, template.waba_id, payload)
    if score is not None:
        quality = templates.set_quality(state, template, score)
        result["quality_webhook"] = quality
        if quality is not None:
            result["quality_webhook_status"] = await _deliver(state, template.waba_id, quality)
    return {"template": template.as_json(), **result}


def _number_event(number: Number, quality: str | None, tier: str | None) -> str | None:
    """The event Meta would name for this change: the limit moving wins, then quality."""
    if tier is not None and tier != number.messaging_limit_tier:
        up = LIMIT_TIERS.index(tier) > LIMIT_TIERS.index(number.messaging_limit_tier)
        return "UPGRADE" if up else "DOWNGRADE"
    if quality is not None and quality != number.quality_rating:
        new, old = _QUALITY_RANK.get(quality), _QUALITY_RANK.get(number.quality_rating)
        if new is not None and old is not None:
            return "FLAGGED" if new > old else "UNFLAGGED"
    return None


async def number_quality(request: Request, state: SandboxState) -> dict[str, Any]:
    """Meta re-rates a number: `quality_rating` and/or `messaging_limit_tier` change, and a
    `phone_number_quality_update` is posted (`event` given, or derived from the change)."""
    body = await _body(request)
    pnid = _str(body, "phone_number_id")
    assert pnid
    number = state.numbers.get(pnid)
    if number is None:
        raise ControlError(f"unknown phone_number_id {pnid}; POST /_sandbox/numbers first.", 404)
    quality = _choice(body, "quality_rating", NUMBER_QUALITY)
    tier = _choice(body, "messaging_limit_tier", LIMIT_TIERS)
    event = _choice(body, "event", NUMBER_EVENTS) or _number_event(number, quality, tier)
    if event is None:
        raise ControlError("nothing changed; give event to post one anyway.")
    old_limit = number.messaging_limit_tier
    number.quality_rating = quality or number.quality_rating
    number.messaging_limit_tier = tier or number.messaging_limit_tier
    payload = payloads.number_quality(
        number,
        event=event,
        current_limit=number.messaging_limit_tier,
        old_limit=old_limit if old_limit != number.messaging_limit_tier else None,
        at=int(state.now()),
    )
    status = await _deliver(state, number.waba_id, payload)
    return {**_number_json(number), "webhook": payload, "webhook_status": status}


async def user_preferences(request: Request, state: SandboxState) -> dict[str, Any]:
    """The user stops (or resumes) marketing messages from a number: Meta's `user_preferences`
    webhook, posted before answering."""
    body = await _body(request)
    pnid, wa_id = _str(body, "phone_number_id"), _str(body, "wa_id")
    assert pnid and wa_id
    number = state.numbers.get(pnid)
    if number is None:
        raise ControlError(f"unknown phone_number_id {pnid}; POST /_sandbox/numbers first.", 404)
    value = _str(body, "value")
    if value not in ("stop", "resume"):
        raise ControlError("value must be stop or resume.")
    detail = _str(body, "detail", required=False) or (
        f"User requested to {value} marketing messages"
    )
    payload = payloads.user_preferences(
        number,
        wa_id=wa_id,
        name=_str(body, "name", required=False) or "Sandbox Customer",
        value=value,
        detail=detail,
        category=_str(body, "category", required=False) or "marketing_messages",
        at=int(state.now()),
    )
    status = await _deliver(state, number.waba_id, payload)
    return {"webhook": payload, "webhook_status": status}


async def add_code(request: Request, state: SandboxState) -> dict[str, Any]:
    body = await _body(request)
    code, token = _str(body, "code"), _str(body, "access_token")
    waba_id = _str(body, "waba_id", required=False)
    assert code and token
    state.codes[code] = CodeGrant(token, waba_id)
    grant = state.grant(token)
    if waba_id:
        grant.whole_wabas.add(waba_id)
    return {"code": code, "waba_id": waba_id}


async def add_app(request: Request, state: SandboxState) -> dict[str, Any]:
    """A Meta app (id and secret): Graph `GET /{app_id}` with its app access token proves it."""
    body = await _body(request)
    app_id, secret = _str(body, "app_id"), _str(body, "app_secret")
    name = _str(body, "name", required=False) or f"App {app_id}"
    assert app_id and secret
    if not app_id.isdigit():
        raise ControlError("app_id must be digits.")
    state.add_app(app_id, secret, name)
    return {"app_id": app_id, "name": name}


def _open_window(state: SandboxState, pnid: str, users: list[str], at: float) -> None:
    for user in users:
        state.windows[(pnid, user)] = at


async def inbound(request: Request, state: SandboxState) -> dict[str, Any]:
    """The customer writes: open the window and post the `messages` webhook Meta would."""
    body = await _body(request)
    pnid = _str(body, "phone_number_id")
    assert pnid
    number = state.numbers.get(pnid)
    if number is None:
        raise ControlError(f"unknown phone_number_id {pnid}; POST /_sandbox/numbers first.", 404)
    given = _str(body, "from")
    assert given
    # Meta's `from` is the bare wa_id; a test may write "+1 650-555-1234".
    digits = re.sub(r"[\s+\-().]", "", given)
    sender = digits if digits.isdigit() else given
    user_id = _str(body, "user_id", required=False)
    now = state.now()
    wamid = new_wamid()
    message: dict[str, Any] = {"from": sender, "id": wamid, "timestamp": str(int(now))}
    extra = body.get("message")
    if isinstance(extra, dict) and isinstance(extra.get("type"), str):
        # Any other inbound type, given as Meta's fields (e.g. {"type": "image", "image": {...}}).
        message.update({k: v for k, v in extra.items() if k not in ("from", "id", "timestamp")})
    else:
        message.update({"type": "text", "text": {"body": _str(body, "text")}})
    if isinstance(body.get("context"), dict):
        message["context"] = body["context"]
    _open_window(state, pnid, [sender] + ([user_id] if user_id else []), now)
    name = _str(body, "name", required=False) or "Sandbox Customer"
    payload = payloads.inbound(number, sender=sender, name=name, message=message, user_id=user_id)
    url = webhooks.target(state, number.waba_id)
    # Delivered before answering, so a test can wait on this call and then look at the app.
    status = await webhooks.deliver(state, url, webhooks.encode(payload)) if url else None
    return {"id": wamid, "webhook_url": url, "webhook_status": status}


async def open_window(request: Request, state: SandboxState) -> dict[str, Any]:
    """Set when the user last wrote, without a webhook (`at` in epoch seconds; default now)."""
    body = await _body(request)
    pnid, user = _str(body, "phone_number_id"), _str(body, "user")
    assert pnid and user
    at = body.get("at", state.now())
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise ControlError("at must be epoch seconds.")
    _open_window(state, pnid, [user], float(at))
    return {"phone_number_id": pnid, "user": user, "last_inbound_at": at}


async def list_requests(request: Request, state: SandboxState) -> dict[str, Any]:
    contains = request.query_params.get("path_contains")
    data = [r for r in state.requests if not contains or contains in r["path"]]
    return {"data": data}


async def clear_requests(request: Request, state: SandboxState) -> dict[str, Any]:
    state.requests.clear()
    return {"success": True}


async def stats(request: Request, state: SandboxState) -> dict[str, Any]:
    return {
        "numbers": {pnid: n.stats.as_json() for pnid, n in state.numbers.items()},
        "at": time.time(),
    }


async def add_fault(request: Request, state: SandboxState) -> dict[str, Any]:
    body = await _body(request)
    code = _int(body, "code")
    delay = body.get("delay_seconds")
    if delay is not None and (
        not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0
    ):
        raise ControlError("delay_seconds must be a non-negative number.")
    if code is None and not delay:
        raise ControlError("code or delay_seconds is required.")
    times = _int(body, "times", 1) or 1
    on = body.get("on", "messages")
    if on not in ("messages", "media"):
        raise ControlError("on must be 'messages' (sends) or 'media' (uploads).")
    fault = Fault(
        phone_number_id=_str(body, "phone_number_id", required=False),
        code=code,
        http_status=_int(body, "http_status"),
        remaining=times,
        delay_seconds=float(delay) if delay is not None else None,
        on=on,
    )
    state.faults.append(fault)
    return {"pending": sum(f.remaining for f in state.faults)}


async def add_latency(request: Request, state: SandboxState) -> dict[str, Any]:
    """Every Graph request whose path contains `path_contains` answers `seconds` late (a slow
    Meta, for the tests and benchmarks that must not be held up by one)."""
    body = await _body(request)
    part = _str(body, "path_contains")
    seconds = body.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise ControlError("seconds must be a non-negative number.")
    assert part is not None
    state.latencies[part] = float(seconds)
    return {"latencies": state.latencies}


async def clear_latency(request: Request, state: SandboxState) -> dict[str, Any]:
    state.latencies.clear()
    return {"latencies": {}}


async def clear_faults(request: Request, state: SandboxState) -> dict[str, Any]:
    state.faults.clear()
    return {"success": True}
