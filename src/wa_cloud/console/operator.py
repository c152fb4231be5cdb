"""The operator's console pages: tenants (create, invite, activate, credits with the ledger),
every tenant's numbers, the event log, model usage and the platform's AI defaults.

Every change calls the function its admin API route calls (api/admin.py, invites.py,
credits.py, numbers.py), with the same checks and the same audit rows: one way to do each
thing. A business's session gets a 404 on every page here (sessions.operator).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode, urlsplit
from uuid import UUID

import asyncpg
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response

from wa_cloud.api.admin import add_tenant, change_tenant, tenant_fields
from wa_cloud.api.credits import credit_fields, move_credits
from wa_cloud.api.events import audit_json, audit_rows
from wa_cloud.api.invites import Invitation, issue_invitation
from wa_cloud.api.numbers import change_number
from wa_cloud.api.pagination import cursor_id, cursor_time, cursor_uuid, decode_cursor, page
from wa_cloud.asgi import field_str, parse_uuid
from wa_cloud.console import session as sessions
from wa_cloud.console import views
from wa_cloud.db.queries import Q
from wa_cloud.errors import BadRequest, NotFound, Unprocessable
from wa_cloud.state import AppState
from wa_cloud.tenants import audit
from wa_cloud.tenants.mail import MailNotConfigured

TENANTS_PAGE: Final = 50
NUMBERS_PAGE: Final = 100
EVENTS_PAGE: Final = 50
LEDGER_ROWS: Final = 30
USAGE_ROWS: Final = 300
# A filter's list of tenants stays a list, not a page of its own; the tenant's page links to
# its events for the rest.
TENANT_CHOICES: Final = 500
# The usage page's periods: UTC days counted back from today, today included.
PERIODS: Final = {"today": ("Today", 1), "7d": ("7 days", 7), "30d": ("30 days", 30)}
DEFAULT_PERIOD: Final = "7d"
# What a redirect after a form says on the page it lands on (fixed texts, never echoed input).
NOTICES: Final = {
    "activated": "The tenant is active: its numbers send and reply again.",
    "deactivated": "The tenant is deactivated: sends and replies stop; inbound is still stored.",
    "credits": "The credits were moved; the ledger below shows the entry.",
}
_WHOLE = re.compile(r"[+-]?[0-9]{1,12}")


def _flag(fields: ImmutableMultiDict[str, str], name: str) -> bool:
    value = fields.get(name)
    if value not in ("true", "false"):
        raise BadRequest(f"'{name}' must be true or false.", "invalid_field")
    return value == "true"


def _cursor_text(value: Any) -> str:
    """A cursor's text as this page gave it out: a string PostgreSQL can compare (no NUL)."""
    if not isinstance(value, str) or "\x00" in value:
        raise TypeError("the cursor's text is not one this page gave out")
    return value


def _blank_is_none(value: str | None) -> str | None:
    """A form's empty field is an absent one (the API's JSON would leave it out)."""
    return value if value and value.strip() else None


# Tenants ------------------------------------------------------------------------------------
@views.page
async def tenants(request: Request) -> Response:
    state, _ = await sessions.operator(request)
    return await _tenant_list(request, state)


async def _tenant_list(
    request: Request,
    state: AppState,
    *,
    status_code: int = 200,
    error: str | None = None,
    form: ImmutableMultiDict[str, str] | None = None,
) -> Response:
    after, after_id = decode_cursor(request, cursor_time, cursor_uuid) or (None, None)
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(Q.list_tenants, after, after_id, TENANTS_PAGE + 1)
        counts = await conn.fetch(Q.operator_number_counts, [r["id"] for r in rows])
    numbers = {r["tenant_id"]: r["numbers"] for r in counts}
    listed = page([dict(r) for r in rows], TENANTS_PAGE, "created_at", "id")
    return views.html(
        request,
        "operator_tenants.html",
        status_code=status_code,
        tenants=listed["data"],
        numbers=numbers,
        next=listed["next"],
        error=error,
        form=form or {},
    )


@views.page
async def create_tenant(request: Request) -> Response:
    """The form's tenant, created as POST /v1/admin/tenants creates one; its page shows the
    API key this once."""
    state, session = await sessions.operator(request)
    fields = await views.signed_form(request, session)
    try:
        name, email = tenant_fields(
            {
                "name": _blank_is_none(fields.get("name")),
                "email": _blank_is_none(fields.get("email")),
            }
        )
    except Unprocessable as exc:
        return await _tenant_list(request, state, status_code=422, error=exc.message, form=fields)
    row, key = await add_tenant(state, name, email)
    return await _tenant_page(request, state, row["id"], status_code=201, api_key=key)


@views.page
async def tenant(request: Request) -> Response:
    state, _ = await sessions.operator(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    return await _tenant_page(
        request, state, tenant_id, notice=NOTICES.get(request.query_params.get("notice", ""))
    )


async def _tenant_page(
    request: Request,
    state: AppState,
    tenant_id: UUID,
    *,
    status_code: int = 200,
    notice: str | None = None,
    error: str | None = None,
    api_key: str | None = None,
    invitation: dict[str, Any] | None = None,
    form: ImmutableMultiDict[str, str] | None = None,
) -> Response:
    """A tenant's page; after a form, with what happened (`notice`, `error`, the new tenant's
    `api_key`, the `invitation`) and the form's fields to fill in again after an error."""
    async with (
        state.pool.acquire() as conn,
        # One snapshot: the balance and the ledger agree.
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        row = await conn.fetchrow(Q.get_tenant, tenant_id)
        if row is None:
            raise NotFound("No tenant with that id.")
        numbers = await conn.fetch(Q.operator_numbers, tenant_id, None, None, NUMBERS_PAGE)
        keys = await conn.fetch(Q.list_keys, tenant_id)
        ledger = await conn.fetch(Q.usage_ledger, tenant_id, None, None, LEDGER_ROWS)
    return views.html(
        request,
        "operator_tenant.html",
        status_code=status_code,
        tenant=row,
        numbers=numbers,
        keys=keys,
        ledger=ledger,
        notice=notice,
        error=error,
        api_key=api_key,
        invitation=invitation,
        form=form or {},
    )


@views.page
async def invite(request: Request) -> Response:
    """Invite as POST /v1/admin/tenants/{id}/invite does; the page says whether the mail went
    out, and shows the new links when it did not (they were issued either way)."""
    state, session = await sessions.operator(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    fields = await views.signed_form(request, session)
    try:
        override = field_str(
            {"email": _blank_is_none(fields.get("email"))}, "email", required=False, max_length=320
        )
        invitation = await issue_invitation(state, tenant_id, override)
    except Unprocessable as exc:
        return await _tenant_page(
            request, state, tenant_id, status_code=422, error=exc.message, form=fields
        )
    return await _tenant_page(
        request, state, tenant_id, invitation=_invitation_view(state, invitation)
    )


def _invitation_view(state: AppState, invitation: Invitation) -> dict[str, Any]:
    """What the page says about an invitation: mailed, or why not and the links to pass on."""
    failure = invitation.failure
    if failure is None and state.settings.smtp_url:
        problem = None
    elif failure is None or isinstance(failure, MailNotConfigured):
        # Without SMTP_URL a dev set-up only logs the mail; production sends nothing.
        problem = "No mail server configured (SMTP_URL): nothing was mailed."
    else:
        problem = str(failure)
    return {
        "sent_to": invitation.sent_to,
        "expires_at": invitation.expires_at,
        "problem": problem,
        # The links are bearer credentials: shown only when no mail carries them.
        "status_link": invitation.status_link if problem else None,
        "console_link": invitation.console_link if problem else None,
    }


@views.page
async def set_active(request: Request) -> Response:
    """(De)activate as PATCH /v1/admin/tenants/{id} does."""
    state, session = await sessions.operator(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    fields = await views.signed_form(request, session)
    active = _flag(fields, "active")
    await change_tenant(state, tenant_id, {"active": active}, active=active)
    notice = "activated" if active else "deactivated"
    return views.redirect(f"/console/tenants/{tenant_id}?notice={notice}")


@views.page
async def add_credits(request: Request) -> Response:
    """Move credits as POST /v1/admin/tenants/{id}/credits does."""
    state, session = await sessions.operator(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    fields = await views.signed_form(request, session)
    raw = fields.get("amount", "").strip()
    # A whole number goes to the API's check as one; anything else fails it with its message.
    amount: int | str | None = int(raw) if _WHOLE.fullmatch(raw) else (raw or None)
    try:
        moved, reason = credit_fields(
            {"amount": amount, "reason": _blank_is_none(fields.get("reason"))}
        )
        await move_credits(state, tenant_id, moved, reason)
    except Unprocessable as exc:
        return await _tenant_page(
            request, state, tenant_id, status_code=422, error=exc.message, form=fields
        )
    return views.redirect(f"/console/tenants/{tenant_id}?notice=credits")


# Numbers ------------------------------------------------------------------------------------
@views.page
async def numbers(request: Request) -> Response:
    """Every tenant's numbers, newest first; the table alone for the live region."""
    state, _ = await sessions.operator(request)
    after, after_number = decode_cursor(request, cursor_time, _cursor_text) or (None, None)
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(Q.operator_numbers, None, after, after_number, NUMBERS_PAGE + 1)
    listed = page([dict(r) for r in rows], NUMBERS_PAGE, "created_at", "phone_number_id")
    fragment = bool(request.headers.get("x-console-fragment"))
    return views.html(
        request,
        "operator_numbers_table.html" if fragment else "operator_numbers.html",
        numbers=listed["data"],
        show_tenant=True,
        next=listed["next"],
        back=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    )


@views.page
async def number_bot(request: Request) -> Response:
    """Switch any tenant's bot as PATCH /v1/numbers/{id} `{"bot_enabled"}` does for its own."""
    state, session = await sessions.operator(request)
    phone_number_id = request.path_params["phone_number_id"]
    fields = await views.signed_form(request, session)
    enabled = _flag(fields, "bot_enabled")
    async with state.pool.acquire() as conn:
        owner = await conn.fetchval(Q.operator_number_tenant, phone_number_id)
    if owner is None:
        raise NotFound("No number with that phone_number_id.")
    await change_number(
        state,
        owner,
        phone_number_id,
        bot_enabled=enabled,
        throughput=None,
        actor=audit.ADMIN,
        changes={"bot_enabled": enabled},
        source="console",
    )
    return views.redirect(views.local_path(fields.get("next"), "/console/numbers"))


# Events -------------------------------------------------------------------------------------
@views.page
async def events(request: Request) -> Response:
    """The audit log as GET /v1/admin/events reads it, by severity and tenant."""
    state, _ = await sessions.operator(request)
    severity = request.query_params.get("severity") or None
    if severity is not None and severity not in audit.SEVERITIES:
        raise BadRequest(f"'severity' must be one of {', '.join(audit.SEVERITIES)}.")
    raw_tenant = request.query_params.get("tenant") or None
    try:
        tenant_id = UUID(raw_tenant) if raw_tenant else None
    except ValueError:
        raise BadRequest("'tenant' is not a tenant id.") from None
    (before,) = decode_cursor(request, cursor_id) or (None,)
    rows = await audit_rows(state, tenant_id, before, EVENTS_PAGE + 1, severity)
    listed = page([audit_json(r) for r in rows], EVENTS_PAGE, "id")
    mentioned = {r["tenant_id"] for r in rows if r["tenant_id"] is not None}
    async with state.pool.acquire() as conn:
        choices = await conn.fetch(Q.operator_tenant_choices, TENANT_CHOICES)
        names = await conn.fetch(
            Q.operator_tenant_names, list(mentioned | ({tenant_id} if tenant_id else set()))
        )
    name_of = {str(r["id"]): r["name"] for r in names}
    offered = [(str(r["id"]), r["name"]) for r in choices]
    if tenant_id is not None and str(tenant_id) not in dict(offered):
        offered.insert(0, (str(tenant_id), name_of.get(str(tenant_id), str(tenant_id))))
    filters = {k: v for k, v in (("severity", severity), ("tenant", raw_tenant)) if v}
    return views.html(
        request,
        "operator_events.html",
        events=[
            {
                **e,
                "created_at": datetime.fromisoformat(e["created_at"]),
                "tenant_name": name_of.get(e["tenant_id"] or ""),
                "detail_text": json.dumps(e["detail"], ensure_ascii=False),
            }
            for e in listed["data"]
        ],
        severities=audit.SEVERITIES,
        severity=severity,
        tenant=raw_tenant,
        tenants=offered,
        next_url=(
            f"/console/events?{urlencode({**filters, 'cursor': listed['next']})}"
            if listed["next"]
            else None
        ),
    )


# Usage --------------------------------------------------------------------------------------
@views.page
async def usage(request: Request) -> Response:
    """Model calls and tokens per tenant, model and feature over a period (UTC days)."""
    state, _ = await sessions.operator(request)
    period = request.query_params.get("period") or DEFAULT_PERIOD
    if period not in PERIODS:
        raise BadRequest(f"'period' must be one of {', '.join(PERIODS)}.")
    days = PERIODS[period][1]
    since: date = datetime.now(UTC).date() - timedelta(days=days - 1)
    async with state.pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(Q.operator_usage, since, USAGE_ROWS + 1)
    shown = rows[:USAGE_ROWS]
    return views.html(
        request,
        "operator_usage.html",
        rows=shown,
        more=len(rows) > USAGE_ROWS,
        totals={k: sum(r[k] for r in shown) for k in ("calls", "input_tokens", "output_tokens")},
        periods=[(key, label) for key, (label, _) in PERIODS.items()],
        period=period,
        since=since,
    )


# AI defaults --------------------------------------------------------------------------------
def _host(url: str | None, default: str) -> str:
    """Where a base URL points, without its path or any credentials in it."""
    if not url:
        return default
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname:
        return "(not a URL)"
    return parts.hostname + (f":{port}" if port else "")


@views.page
async def ai_defaults(request: Request) -> Response:
    """The platform's model defaults, as the environment sets them (never a key's value)."""
    state, _ = await sessions.operator(request)
    settings = state.settings
    return views.html(
        request,
        "operator_ai.html",
        model=settings.ai_model,
        openai_host=_host(settings.openai_base_url, "api.openai.com (the default)"),
        openai_key=bool(settings.openai_api_key),
        gemini_host=_host(settings.gemini_base_url, "Google's Gemini API (the default)"),
        gemini_key=bool(settings.gemini_api_key),
    )
