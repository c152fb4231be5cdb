"""`/v1/webhooks`: the tenant's own callback for the events we forward, and its delivery log.

`PUT` sets the URL and events and returns a new signing secret, shown that once and stored
sealed (a URL the URL guard refuses is a 422 `url_not_allowed`); `GET` shows the rest. Every
query is scoped by the caller's tenant id.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wa_cloud.api.auth import require_tenant
from wa_cloud.api.pagination import cursor_time, cursor_uuid, decode_cursor, limit_of, page
from wa_cloud.asgi import field_str, read_object, reject_unknown
from wa_cloud.db.queries import Q
from wa_cloud.errors import BadRequest, NotFound, Unprocessable
from wa_cloud.forwarding.events import EVENTS
from wa_cloud.tenants import audit, sealed
from wa_cloud.urlguard import MalformedUrl, checked_url

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2000
STATES = ("pending", "delivered", "failed")


def _url(body: dict[str, Any]) -> str:
    url = field_str(body, "url", max_length=MAX_URL_LENGTH)
    refused = Unprocessable("'url' must be an absolute http(s) URL.", "invalid_field")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise refused
    try:
        checked_url(url)  # the guard's own reading: what the forwarder's client will be given
    except MalformedUrl:
        raise refused from None  # refused by the policy (credentials): url_not_allowed
    return url


def _events(body: dict[str, Any]) -> list[str]:
    value = body.get("events")
    if value is None:
        raise Unprocessable("'events' is required.", "missing_field")
    if not isinstance(value, list) or not value or not all(isinstance(e, str) for e in value):
        raise Unprocessable("'events' must be a non-empty list of event names.", "invalid_field")
    unknown = sorted(set(value) - set(EVENTS))
    if unknown:
        raise Unprocessable(
            f"Unknown event(s): {', '.join(unknown)}; known: {', '.join(EVENTS)}.",
            "invalid_field",
        )
    return [e for e in EVENTS if e in value]


def _webhook_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "url": row["url"],
        "events": list(row["events"]),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def put_webhook(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(body, {"url", "events"})
    url = _url(body)
    events = _events(body)
    # Resolved now, so a private address is refused while the tenant is here to see it; the
    # forwarder checks again at every delivery (what the name resolves to may change).
    await state.tenant_http.guard.check(url)
    secret = "whsec_" + secrets.token_urlsafe(32)
    sealed_secret = state.box.seal(
        secret, context=sealed.WEBHOOK_SECRET.context(str(caller.tenant_id))
    )
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(Q.put_webhook, caller.tenant_id, url, events, sealed_secret)
        await audit.record(
            conn,
            "webhook.updated",
            tenant_id=caller.tenant_id,
            actor=audit.tenant_actor(caller.tenant_id),
            # The host only: a URL may carry a token of the tenant's in its path or query.
            detail={"host": urlsplit(url).hostname, "events": events},
        )
    logger.info("webhook set", extra={"tenant_id": str(caller.tenant_id), "events": events})
    return JSONResponse({"url": row["url"], "events": list(row["events"]), "secret": secret})


async def get_webhook(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(Q.get_webhook, caller.tenant_id)
    if row is None:
        raise NotFound("No webhook is set; PUT /v1/webhooks sets one.")
    return JSONResponse(_webhook_json(row))


async def delete_webhook(request: Request) -> Response:
    state, caller = await require_tenant(request)
    caller.require_active()
    async with state.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(Q.delete_webhook, caller.tenant_id) is None:
            raise NotFound("No webhook is set.")
        dropped = await conn.execute(Q.drop_pending_forwards, caller.tenant_id)
        await audit.record(
            conn,
            "webhook.deleted",
            tenant_id=caller.tenant_id,
            actor=audit.tenant_actor(caller.tenant_id),
            detail={"pending_dropped": int(dropped.rsplit(" ", 1)[-1])},
        )
    logger.info("webhook deleted", extra={"tenant_id": str(caller.tenant_id)})
    return Response(status_code=204)


async def list_deliveries(request: Request) -> JSONResponse:
    """The tenant's forwarded events, newest first; `?state=pending|delivered|failed`."""
    state, caller = await require_tenant(request)
    limit = limit_of(request)
    wanted = request.query_params.get("state")
    if wanted is not None and wanted not in STATES:
        raise BadRequest(f"'state' must be one of {', '.join(STATES)}.", "invalid_field")
    after, after_id = decode_cursor(request, cursor_time, cursor_uuid) or (None, None)
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(
            Q.list_forwards, caller.tenant_id, wanted, after, after_id, limit + 1
        )
    items = [
        {
            "id": str(r["id"]),
            "event": r["event"],
            "state": r["state"],
            "attempts": r["attempts"],
            "last_status": r["last_status"],
            "last_error": r["last_error"],
            "created_at": r["created_at"].isoformat(),
            "delivered_at": None if r["delivered_at"] is None else r["delivered_at"].isoformat(),
        }
        for r in rows
    ]
    return JSONResponse(page(items, limit, "created_at", "id"))
