"""A business's campaigns (broadcasts) in the console: the list with each one's progress, live,
and each campaign's page as `GET /v1/broadcasts/{id}` shows it, with its recipients.csv and
pause, resume and cancel buttons.

Everything goes through the API's own functions (api/broadcasts.py): the page reads
`read_broadcast`, the buttons call `move_broadcast` (so a move a campaign's state does not allow
gets the API's message and status), the download streams `recipients_csv_response`. Creating a
campaign stays in the API (`POST /v1/broadcasts`): its recipients are a file or a JSON list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from wa_cloud.api.broadcasts import MOVES, move_broadcast, read_broadcast, recipients_csv_response
from wa_cloud.api.pagination import cursor_time, cursor_uuid, decode_cursor, encode_cursor
from wa_cloud.asgi import parse_uuid
from wa_cloud.campaigns.broadcasts import summaries_json
from wa_cloud.console import session as sessions
from wa_cloud.console import views
from wa_cloud.console.conversations import NumberChoice, number_of, read_numbers, with_query
from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError
from wa_cloud.state import AppState

PAGE_SIZE: Final = 50
STATE_CLASSES: Final = {"running": "ok", "done": "ok", "paused": "warn", "cancelled": "bad"}
ACTION_LABELS: Final = {"pause": "Pause", "resume": "Resume", "cancel": "Cancel"}
COUNTED: Final = ("queued", "sent", "delivered", "read", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class CampaignView:
    """A campaign as the API shows it (`shown`), with what the page adds: its number's name,
    its state's badge, its times in words and the moves its state allows."""

    shown: Mapping[str, Any]
    number: str
    state_class: str
    created: str
    at: str
    finished: str
    actions: tuple[str, ...]

    @property
    def id(self) -> str:
        return str(self.shown["id"])

    @classmethod
    def of(cls, shown: Mapping[str, Any], numbers: Sequence[NumberChoice]) -> CampaignView:
        choice = number_of(numbers, shown["from"])
        status = shown["status"]
        return cls(
            shown=shown,
            number=choice.label if choice else shown["from"],
            state_class=STATE_CLASSES.get(status, ""),
            created=_when(shown["created_at"]),
            at=_when(shown["at"]),
            finished=_when(shown["finished_at"]),
            actions=tuple(a for a, (allowed, _) in MOVES.items() if status in allowed),
        )


def _when(iso: str | None) -> str:
    """An API time (ISO 8601, UTC) as the page shows it."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class CampaignList:
    campaigns: list[CampaignView]
    src: str  # the list fragment's address (this page again), for live refreshes
    older: str | None
    first_page: bool


async def _read_list(conn: asyncpg.Connection, tenant_id: UUID, request: Request) -> CampaignList:
    cursor = decode_cursor(request, cursor_time, cursor_uuid)
    after, after_id = cursor or (None, None)
    rows = await conn.fetch(Q.list_broadcasts, tenant_id, after, after_id, PAGE_SIZE + 1)
    shown_rows = rows[:PAGE_SIZE]
    numbers = await read_numbers(conn, tenant_id)
    campaigns = [CampaignView.of(s, numbers) for s in await summaries_json(conn, shown_rows)]
    older = None
    if len(rows) > PAGE_SIZE:
        last = shown_rows[-1]
        older = with_query(
            "/console/campaigns",
            cursor=encode_cursor(last["created_at"].isoformat(), str(last["id"])),
        )
    at = request.query_params.get("cursor") if cursor else None
    src = with_query("/console/campaigns/list", cursor=at)
    return CampaignList(campaigns, src, older, cursor is None)


@views.page
async def campaigns(request: Request) -> Response:
    state, business = await sessions.business(request)
    async with state.pool.acquire() as conn:
        listing = await _read_list(conn, business.tenant_id, request)
    return views.html(request, "campaigns.html", listing=listing)


@views.page
async def campaign_list(request: Request) -> Response:
    """The list alone (a live region's refresh: counts move as messages do)."""
    state, business = await sessions.business(request)
    async with state.pool.acquire() as conn:
        listing = await _read_list(conn, business.tenant_id, request)
    return views.html(request, "campaigns_list.html", listing=listing)


def _broadcast_id(request: Request) -> UUID:
    return parse_uuid(request.path_params["broadcast_id"])


async def _detail(
    conn: asyncpg.Connection, tenant_id: UUID, broadcast_id: UUID, active: bool
) -> dict[str, Any]:
    shown = await read_broadcast(conn, tenant_id, broadcast_id)
    campaign = CampaignView.of(shown, await read_numbers(conn, tenant_id))
    return {"campaign": campaign, "active": active, "counted": COUNTED, "labels": ACTION_LABELS}


async def _page(
    request: Request,
    state: AppState,
    business: sessions.Business,
    broadcast_id: UUID,
    *,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    async with state.pool.acquire() as conn:
        context = await _detail(conn, business.tenant_id, broadcast_id, business.caller.active)
    return views.html(
        request,
        "campaigns_campaign.html",
        status_code=status_code,
        error=error,
        moved=request.query_params.get("moved") if error is None else None,
        **context,
    )


@views.page
async def campaign(request: Request) -> Response:
    state, business = await sessions.business(request)
    return await _page(request, state, business, _broadcast_id(request))


@views.page
async def campaign_counts(request: Request) -> Response:
    """The campaign's progress alone (a live region's refresh)."""
    state, business = await sessions.business(request)
    async with state.pool.acquire() as conn:
        context = await _detail(
            conn, business.tenant_id, _broadcast_id(request), business.caller.active
        )
    return views.html(request, "campaigns_progress.html", **context)


@views.page
async def move_campaign(request: Request) -> Response:
    """Pause, resume or cancel, as POST /v1/broadcasts/{id}/{action} does; a move the state
    does not allow shows the page again with the API's message and status."""
    state, business = await sessions.business(request)
    await views.signed_form(request, business.session)
    broadcast_id = _broadcast_id(request)
    action = request.path_params["action"]
    business.caller.require_active()
    try:
        await move_broadcast(state.pool, business.tenant_id, broadcast_id, action)
    except ApiError as exc:
        if exc.status == 404:
            raise
        return await _page(
            request, state, business, broadcast_id, status_code=exc.status, error=exc.message
        )
    return views.redirect(f"/console/campaigns/{broadcast_id}?moved={action}")


@views.page
async def recipients_csv(request: Request) -> Response:
    state, business = await sessions.business(request)
    response = await recipients_csv_response(state.pool, business.tenant_id, _broadcast_id(request))
    # The console's headers (no-store, nosniff) on the download too.
    response.headers.update(
        {k: v for k, v in views.HEADERS.items() if k != "content-security-policy"}
    )
    return response
