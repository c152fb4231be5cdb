"""A business's numbers in the console: the list, and each number's page with its connection
(state, and the QR code and pairing code of a web session waiting for a scan, live), the
assistant's configuration form with a preview of its instructions, its tools and files.

The form saves through api/bot.save_bot, the function behind `PUT /v1/numbers/{id}/bot`: its
fields are laid over the current configuration, so what the form does not show (tools, fields
to extract, follow-ups, the model key) stays as it is, and a bad value gets the API's message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from wa_cloud.ai.config import DEFAULTS, REASONING_EFFORTS, BotConfig, as_body
from wa_cloud.ai.replies import instructions_for
from wa_cloud.api.bot import load_bot, save_bot
from wa_cloud.api.files import remove_file
from wa_cloud.asgi import parse_uuid
from wa_cloud.campaigns.limits import TIERS
from wa_cloud.console import session as sessions
from wa_cloud.console import views
from wa_cloud.db.queries import Q
from wa_cloud.errors import NotFound, Unprocessable
from wa_cloud.inbound.sessions import QR_IMAGE
from wa_cloud.pages.status import PROVIDERS, QUALITY_CLASSES, SESSION_STATES
from wa_cloud.providers.watchdog import session_json
from wa_cloud.state import AppState

NOT_YOURS: Final = "No number with that phone_number_id is yours."
# The preview fills {{contact_name}} and {{contact_fields}} for a customer like this one.
EXAMPLE_CONTACT: Final = "Maria"

# The form's fields by the type the PUT body wants them in (ai/config.py parse_config).
TEXTS: Final = (
    "instructions",
    "model",
    "base_url",
    "api",
    "reasoning_effort",
    "timezone",
    "fallback_text",
    "out_of_credits_text",
    "media_unavailable_text",
)
INTEGERS: Final = ("max_output_tokens", "history_turns", "credits_per_reply", "retention_hours")
NUMBERS: Final = ("temperature", "debounce_seconds", "human_takeover_minutes")
SWITCHES: Final = ("enabled", "voice_replies")


# The list -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NumberRow:
    phone_number_id: str
    title: str
    verified_name: str | None
    provider: str
    provider_label: str
    state: str
    state_class: str
    quality_rating: str | None
    quality_class: str
    messaging_limit: str
    bot_enabled: bool

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> NumberRow:
        state, state_class = connection_state(
            row["provider"], row["session_state"], row["has_token"], row["flagged_reason"]
        )
        return cls(
            phone_number_id=row["phone_number_id"],
            title=row["display_phone_number"] or row["phone_number_id"],
            verified_name=row["verified_name"],
            provider=row["provider"],
            provider_label=PROVIDERS.get(row["provider"], row["provider"]),
            state=state,
            state_class=state_class,
            quality_rating=row["quality_rating"],
            quality_class=QUALITY_CLASSES.get((row["quality_rating"] or "").upper(), ""),
            messaging_limit=limit_label(row["messaging_limit"]),
            bot_enabled=row["bot_enabled"],
        )


def connection_state(
    provider: str, session_state: str | None, has_token: bool, flagged_reason: str | None
) -> tuple[str, str]:
    """What the number's connection is, in words, and its badge class: a web session's state;
    a Cloud API number is connected while it has a token and sending is not stopped."""
    if provider == "websession":
        label = SESSION_STATES.get(session_state or "logged_out", session_state or "")
        return label, {"open": "ok", "qr": "warn", "connecting": "warn"}.get(
            session_state or "", "bad"
        )
    if flagged_reason:
        return "Sending stopped", "bad"
    if not has_token:
        return "No access token", "bad"
    return "Connected", "ok"


def limit_label(tier: str | None) -> str:
    """Meta's messaging limit tier in words (new customers per 24 hours)."""
    if not tier or tier.upper() not in TIERS:
        return tier or "—"
    limit = TIERS[tier.upper()]
    return "Unlimited" if limit is None else f"{limit:,} customers / 24 h"


@views.page
async def my_numbers(request: Request) -> Response:
    state, business = await sessions.business(request)
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(Q.console_numbers, business.tenant_id)
    return views.html(request, "numbers.html", numbers=[NumberRow.of(r) for r in rows])


# One number -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionView:
    """The live part of a number's page: its connection, and how to link a web session."""

    phone_number_id: str
    provider: str
    state: str
    state_class: str
    reason: str | None
    qr_image: str | None  # a data:image URI while a web session waits for a scan
    pairing_code: str | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> SessionView:
        if row["provider"] == "websession":
            # As GET /v1/numbers/{id}/qr shows it (no session row: logged out).
            shown = session_json(row if row["state"] is not None else None)
            label, badge = connection_state("websession", shown["state"], True, None)
            qr = shown["qr_base64"]
            return cls(
                phone_number_id=row["phone_number_id"],
                provider="websession",
                state=label,
                state_class=badge,
                reason=shown.get("reason"),
                # Only what inbound/sessions.py accepts (a base64 PNG or JPEG), whatever the
                # row holds: never an SVG or another kind of address in the page's <img>.
                qr_image=qr if isinstance(qr, str) and QR_IMAGE.fullmatch(qr) else None,
                pairing_code=shown["pairing_code"],
            )
        label, badge = connection_state(
            row["provider"], None, row["has_token"], row["flagged_reason"]
        )
        return cls(
            phone_number_id=row["phone_number_id"],
            provider=row["provider"],
            state=label,
            state_class=badge,
            reason=row["flagged_reason"],
            qr_image=None,
            pairing_code=None,
        )


@dataclass(frozen=True, slots=True)
class ToolRow:
    name: str
    method: str
    host: str


async def _number(conn: asyncpg.Connection, tenant_id: UUID, number: str) -> asyncpg.Record:
    row = await conn.fetchrow(Q.console_number, number, tenant_id)
    if row is None:
        raise NotFound(NOT_YOURS)
    return row


def form_values(config: BotConfig) -> dict[str, str]:
    """The configuration as the form's fields show it (never the model key)."""
    body = as_body(config)
    values = {name: "" if body[name] is None else str(body[name]) for name in TEXTS}
    values.update({name: str(body[name]) for name in INTEGERS})
    # Stored as `real`: 0.7 comes back as 0.699999988, which `g` shows as typed.
    values.update({name: f"{body[name]:g}" for name in NUMBERS})
    values.update({name: "on" for name in SWITCHES if body[name]})
    values["owner_phones"] = "\n".join(config.owner_phones)
    return values


def form_body(fields: Mapping[str, str], current: BotConfig) -> dict[str, Any]:
    """The current configuration as a PUT body with the form's fields laid over it. Empty
    fields are null (the default, as in the API); numbers that do not parse go as given, so
    the API's rule refuses them with its own message."""
    body = as_body(current)
    for name in TEXTS:
        text = fields.get(name, "").replace("\r\n", "\n").strip()
        body[name] = text or None
    for name in INTEGERS:
        body[name] = _parsed(fields.get(name, ""), int)
    for name in NUMBERS:
        body[name] = _parsed(fields.get(name, ""), float)
    for name in SWITCHES:
        body[name] = fields.get(name) == "on"
    phones = fields.get("owner_phones", "").replace(",", "\n").splitlines()
    body["owner_phones"] = [p.strip() for p in phones if p.strip()]
    if fields.get("api_key", "").strip():
        body["api_key"] = fields["api_key"].strip()
    elif fields.get("forget_api_key") == "on":
        body["api_key"] = None  # given as null: the stored key is dropped
    return body


def _parsed(text: str, kind: type[int] | type[float]) -> int | float | str | None:
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        return text


def preview(config: BotConfig, row: Mapping[str, Any], now: datetime) -> str:
    """The instructions as the model would get them, for an example customer: filled in by the
    reply pipeline's own function, in the configuration's time zone."""
    example = {
        "name": EXAMPLE_CONTACT,
        "verified_name": row["verified_name"],
        "tenant_name": row["tenant_name"],
        "fields": None,
        "notes": None,
    }
    return instructions_for(config, example, now)


async def _page(
    request: Request,
    state: AppState,
    tenant_id: UUID,
    number: str,
    *,
    status_code: int = 200,
    submitted: Mapping[str, str] | None = None,
    error: str | None = None,
) -> Response:
    """The number's page; with `submitted`, the form as it was sent (and its preview)."""
    async with state.pool.acquire() as conn:
        row = await _number(conn, tenant_id, number)
        config = await load_bot(conn, tenant_id, number)
        files = await conn.fetch(Q.list_files, number, tenant_id)
    shown = config
    values = form_values(config)
    if submitted is not None:
        values = {k: v for k, v in submitted.items() if k not in ("csrf", "api_key", "preview")}
        shown = replace(
            config,
            instructions=submitted.get("instructions", "").replace("\r\n", "\n").strip()
            or DEFAULTS.instructions,
            timezone=submitted.get("timezone", "").strip() or "UTC",
        )
    return views.html(
        request,
        "numbers_number.html",
        status_code=status_code,
        number=NumberRow.of({**row, "session_state": row["state"]}),
        live=SessionView.of(row),
        config=config,
        values=values,
        preview=preview(shown, row, datetime.now(UTC)),
        error=error,
        saved=request.query_params.get("saved") == "1" and submitted is None,
        tools=[ToolRow(t.name, t.method, urlsplit(t.url).hostname or t.url) for t in config.tools],
        files=files,
        efforts=REASONING_EFFORTS,
    )


@views.page
async def my_number(request: Request) -> Response:
    state, business = await sessions.business(request)
    number = request.path_params["phone_number_id"]
    return await _page(request, state, business.tenant_id, number)


@views.page
async def number_session(request: Request) -> Response:
    """The live region of the number's page: refetched when the stream says the number
    changed (its web session's state or QR code among it)."""
    state, business = await sessions.business(request)
    async with state.pool.acquire() as conn:
        row = await _number(conn, business.tenant_id, request.path_params["phone_number_id"])
    return views.html(request, "numbers_session.html", live=SessionView.of(row))


@views.page
async def save_number_bot(request: Request) -> Response:
    """The assistant's form: saved as PUT /v1/numbers/{id}/bot saves it, or (its Preview
    button) shown again with the preview of what was typed, saving nothing."""
    state, business = await sessions.business(request)
    fields = await views.signed_form(request, business.session)
    number = request.path_params["phone_number_id"]
    if fields.get("preview"):
        return await _page(request, state, business.tenant_id, number, submitted=fields)
    business.caller.require_active()
    try:
        await save_bot(
            state, business.tenant_id, number, lambda current: form_body(fields, current)
        )
    except Unprocessable as exc:
        return await _page(
            request,
            state,
            business.tenant_id,
            number,
            status_code=exc.status,
            submitted=fields,
            error=exc.message,
        )
    return views.redirect(f"/console/my-numbers/{number}?saved=1")


@views.page
async def delete_number_file(request: Request) -> Response:
    state, business = await sessions.business(request)
    await views.signed_form(request, business.session)
    business.caller.require_active()
    number = request.path_params["phone_number_id"]
    await remove_file(state, business.tenant_id, number, parse_uuid(request.path_params["file_id"]))
    return views.redirect(f"/console/my-numbers/{number}")
