"""Operations: liveness, readiness (database and migrations), Prometheus metrics."""

from __future__ import annotations

import asyncio
import gc
import hmac
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

from wa_cloud.asgi import error_response
from wa_cloud.db.migrations import head_revision
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q
from wa_cloud.errors import Unauthorized
from wa_cloud.state import AppState

if TYPE_CHECKING:
    from wa_cloud.worker import Health

_READY_TIMEOUT = 2.0
# Below this many deliveries (the planner's estimate) a scrape counts them exactly.
EXACT_COUNT_BELOW = 200_000


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    state: AppState = request.state.wa
    try:
        async with asyncio.timeout(_READY_TIMEOUT), state.pool.acquire() as conn:
            current = await conn.fetchval("SELECT version_num FROM alembic_version")
    except DATABASE_ERRORS:
        return error_response(503, "database_unavailable", "The database is not reachable.")
    head = head_revision()
    if current != head:
        return error_response(
            503, "migrations_pending", f"Schema is at {current}, the code expects {head}."
        )
    return worker_readiness(state.worker_health, {"status": "ready", "schema": current})


def worker_readiness(health: Health | None, ready: dict[str, Any]) -> JSONResponse:
    """Ready, unless a worker loop of this process is down (restarting after a crash)."""
    if health is None:
        return JSONResponse(ready)
    if not health.ready:
        down = ", ".join(name for name, s in health.loops.items() if not s.running)
        message = f"Worker loop(s) down, restarting: {down}."
        return error_response(503, "worker_degraded", message, {"loops": health.as_json()})
    return JSONResponse({**ready, "loops": health.as_json()})


async def metrics(request: Request) -> PlainTextResponse:
    state: AppState = request.state.wa
    expected = state.settings.metrics_token
    if expected is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("/metrics needs 'Authorization: Bearer <WA_METRICS_TOKEN>'.")
    gauges: list[tuple[str, dict[str, str], float]] = [
        ("wa_gc_frozen_objects", {}, gc.get_freeze_count())
    ]
    try:
        async with asyncio.timeout(_READY_TIMEOUT), state.pool.acquire() as conn:
            estimate = await conn.fetchval(Q.deliveries_estimate)
            if estimate < EXACT_COUNT_BELOW:
                counted = await conn.fetch(Q.delivery_counts)
            else:
                counted = await conn.fetch(Q.delivery_counts_estimated, estimate)
            for row in counted:
                gauges.append(("wa_deliveries", {"state": row["state"]}, row["n"]))
            gauges.append(("wa_processing_lag_seconds", {}, await conn.fetchval(Q.processing_lag)))
            gauges.append(("wa_orphaned_events", {}, await conn.fetchval(Q.orphaned_count)))
    except DATABASE_ERRORS:
        pass  # the process counters are still worth scraping while the database is down
    return PlainTextResponse(state.metrics.render(gauges), media_type="text/plain; version=0.0.4")
