"""`GET /t/{token}`: a tenant's status page, opened from the signed link in its invitation.

The token is the only credential; the page shows state and counts, never a secret, key or id
that could be used against the API. A bad or expired token gets the same friendly 404 as a
tenant that no longer exists, so the page says nothing about which it was. A valid link that a
newer invitation replaced gets a 410 page, and a deactivated tenant's link a 403 page: the
holder of a once-valid link learns only what the newest invitation or the operator told them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import HTMLResponse

from wa_cloud.db.queries import Q
from wa_cloud.pages import render
from wa_cloud.state import AppState
from wa_cloud.tenants.links import LIFETIME, open_link
from wa_cloud.window import WINDOW, window_state

logger = logging.getLogger(__name__)

# The token is in the URL: no caching anywhere, no Referer, no indexing, nothing external.
HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-robots-tag": "noindex, nofollow",
    "x-content-type-options": "nosniff",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}

PROVIDERS = {"cloud": "Cloud API", "websession": "Web session"}
QUALITY_CLASSES = {"GREEN": "ok", "YELLOW": "warn", "RED": "bad"}
SESSION_STATES = {
    "connecting": "Connecting",
    "qr": "Waiting for a scan",
    "open": "Linked",
    "closed": "Reconnecting",
    "refused": "Refused",
    "logged_out": "Logged out",
}


@dataclass(frozen=True, slots=True)
class NumberStatus:
    title: str
    verified_name: str | None
    connected: bool
    provider_label: str
    bot_enabled: bool
    quality_rating: str | None
    quality_class: str
    throughput_mps: int
    inbound_today: int
    outbound_today: int
    open_windows: int
    # Onboarding does not store Meta's messaging limit tier yet: the page shows "—" until it does.
    messaging_limit: str | None = None
    # A web session: its state, and the QR code (and pairing code) while it waits for a scan.
    session_state: str | None = None
    qr_base64: str | None = None
    pairing_code: str | None = None


async def status_page(request: Request) -> HTMLResponse:
    state: AppState = request.state.wa
    link = open_link(state.settings, request.path_params["token"])
    if link is None:
        logger.info("status link refused")
        return not_found()
    now = datetime.now(UTC)
    async with state.pool.acquire() as conn:
        tenant = await conn.fetchrow(Q.page_tenant, link.tenant_id)
        if tenant is None:  # deleted since the link was sent
            return not_found()
        # Checked before the account's state: a revoked link learns nothing newer.
        if link.generation != tenant["link_generation"]:
            logger.info("status link revoked", extra={"tenant_id": str(link.tenant_id)})
            return refused("replaced.html", 410)
        if not tenant["active"]:
            return refused("paused.html", 403)
        numbers = await _numbers(conn, link.tenant_id, now)
    html = render(
        "status.html",
        tenant_name=tenant["name"],
        as_of=now.strftime("%Y-%m-%d %H:%M"),
        numbers=numbers,
    )
    return HTMLResponse(html, headers=HEADERS)


def not_found() -> HTMLResponse:
    return refused("not_found.html", 404)


def refused(template: str, status_code: int) -> HTMLResponse:
    html = render(template, lifetime_days=LIFETIME.days)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


async def _numbers(conn: asyncpg.Connection, tenant_id: UUID, now: datetime) -> list[NumberStatus]:
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await conn.fetch(Q.page_numbers, tenant_id)
    counts = {
        r["phone_number_id"]: (r["inbound"], r["outbound"])
        for r in await conn.fetch(Q.page_message_counts, tenant_id, day_start)
    }
    # SQL narrows to contacts who wrote within one window; the window rule itself stays in
    # window.py, so the page and the send path can never disagree about what "open" means.
    open_windows = Counter(
        r["phone_number_id"]
        for r in await conn.fetch(Q.page_window_candidates, tenant_id, now - WINDOW)
        if window_state(r["last_inbound_at"], r["window_closed_at"], now).open
    )
    return [
        NumberStatus(
            title=r["display_phone_number"] or r["phone_number_id"],
            verified_name=r["verified_name"],
            connected=r["has_token"]
            and (r["provider"] != "websession" or r["session_state"] == "open"),
            provider_label=PROVIDERS.get(r["provider"], r["provider"]),
            bot_enabled=r["bot_enabled"],
            quality_rating=r["quality_rating"],
            quality_class=QUALITY_CLASSES.get((r["quality_rating"] or "").upper(), ""),
            throughput_mps=r["throughput_mps"],
            inbound_today=counts.get(r["phone_number_id"], (0, 0))[0],
            outbound_today=counts.get(r["phone_number_id"], (0, 0))[1],
            open_windows=open_windows[r["phone_number_id"]],
            session_state=SESSION_STATES.get(r["session_state"] or ""),
            qr_base64=r["qr_base64"] if r["session_state"] == "qr" else None,
            pairing_code=r["pairing_code"] if r["session_state"] == "qr" else None,
        )
        for r in rows
    ]
