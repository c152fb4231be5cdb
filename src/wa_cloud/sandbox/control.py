"""The control API under `/_sandbox/` (not Meta's): seed numbers, tokens, templates and codes,
play the customer (inbound messages), inject faults, and read what the sandbox saw.

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

from wa_cloud.sandbox import payloads, webhooks
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
from wa_cloud.sandbox.templates import CATEGORIES


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
    )
    state.templates[template.id] = template
    return template.as_json()


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
    fault = Fault(
        phone_number_id=_str(body, "phone_number_id", required=False),
        code=code,
        http_status=_int(body, "http_status"),
        remaining=times,
        delay_seconds=float(delay) if delay is not None else None,
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
