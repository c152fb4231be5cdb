"""A business's usage in the console: its credits and ledger, the model tokens its assistants
used (as `GET /v1/usage` reads them, api/credits.read_usage), and its messages in and out per
day over the last 30 UTC days as a bar chart drawn on the server (charts.py) with the same
numbers as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from wa_cloud.api.credits import read_usage
from wa_cloud.console import session as sessions
from wa_cloud.console import views
from wa_cloud.console.charts import Group, bar_chart
from wa_cloud.db.queries import Q

LEDGER_SHOWN: Final = 50
CHART_DAYS: Final = 30
SERIES: Final = ("in", "out")


@dataclass(frozen=True, slots=True)
class DayCount:
    day: date
    inbound: int
    outbound: int


def every_day(rows: list[asyncpg.Record], first: date, last: date) -> list[DayCount]:
    """One count per day from `first` to `last`, zeros where the query had no row."""
    found = {r["day"]: (r["inbound"], r["outbound"]) for r in rows}
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [DayCount(d, *found.get(d, (0, 0))) for d in days]


def messages_chart(days: list[DayCount]) -> str:
    total_in = sum(d.inbound for d in days)
    total_out = sum(d.outbound for d in days)
    return bar_chart(
        "Messages per day",
        f"Messages received and sent per UTC day from {days[0].day} to {days[-1].day}: "
        f"{total_in} received, {total_out} sent.",
        SERIES,
        [Group(f"{d.day:%b %d}", (d.inbound, d.outbound)) for d in days],
        label_every=5,
        chart_id="messages-per-day",
    )


@views.page
async def my_usage(request: Request) -> Response:
    state, business = await sessions.business(request)
    today = datetime.now(UTC).date()
    first = today - timedelta(days=CHART_DAYS - 1)
    async with state.pool.acquire() as conn:
        usage = await read_usage(conn, business.tenant_id, limit=LEDGER_SHOWN)
        rows = await conn.fetch(Q.console_message_days, business.tenant_id, first)
    days = every_day(list(rows), first, today)
    return views.html(
        request,
        "usage.html",
        usage=usage,
        ledger_shown=LEDGER_SHOWN,
        days=days,
        chart=messages_chart(days),
    )
