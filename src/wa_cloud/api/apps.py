"""`/v1/apps`: a tenant's own Meta apps, whose webhooks arrive at `/webhook/apps/{app_id}`.

An app id is stored only once its owner has proven it: Graph `GET /{app_id}` with the app access
token `{app_id}|{app_secret}` must answer with that id. Without the proof, anyone could claim
another business's app id first and have its webhooks verified with a secret of their choosing.
The same proof guards a new secret (PUT). No connection is held while Meta answers.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_tenant
from wa_cloud.asgi import field_digits, field_str, read_object, reject_unknown
from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError, Conflict, NotFound, Unprocessable
from wa_cloud.graph.errors import GraphError
from wa_cloud.inbound.routes import forget_app
from wa_cloud.state import AppState
from wa_cloud.tenants import audit, sealed

logger = logging.getLogger(__name__)


class AppNotProven(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            422,
            "app_not_verified",
            "Meta did not confirm this app id with this app secret "
            f"(GET /{{app_id}} with the app access token): {detail}",
        )


async def prove_app(state: AppState, app_id: str, secret: str) -> None:
    """Ask Meta whether `secret` is `app_id`'s secret; raise `AppNotProven` (503 if Meta is
    unreachable)."""
    try:
        node = await state.graph.app(app_id, f"{app_id}|{secret}")
    except GraphError as exc:
        if exc.retryable:
            raise ApiError(503, "meta_unavailable", "Meta did not answer; retry.") from exc
        raise AppNotProven(exc.details or exc.message) from exc
    if str(node.get("id")) != app_id:
        raise AppNotProven("Meta answered for another object")


def app_json(state: AppState, row: asyncpg.Record) -> dict[str, Any]:
    return {
        "app_id": row["app_id"],
        "callback_url": f"{state.settings.base_url}/webhook/apps/{row['app_id']}",
        "created_at": row["created_at"].isoformat(),
    }


def _app_secret(secret: str) -> str:
    # Meta's app secrets are hex; the secret travels in the app access token, an HTTP header.
    if not (secret.isascii() and secret.isprintable() and "|" not in secret):
        raise Unprocessable("'app_secret' is not a Meta app secret.", "invalid_field")
    return secret


def _sealed(
    state: AppState, app_id: str, secret: str | None, verify_token: str | None
) -> tuple[bytes | None, bytes | None]:
    """The app's secret and verify token sealed for their columns (None stays None)."""
    return (
        None
        if secret is None
        else state.box.seal(secret, context=sealed.APP_SECRET.context(app_id)),
        None
        if verify_token is None
        else state.box.seal(verify_token, context=sealed.APP_VERIFY_TOKEN.context(app_id)),
    )


async def _audit(conn: asyncpg.Connection, action: str, tenant_id: UUID, app_id: str) -> None:
    await audit.record(
        conn,
        action,
        tenant_id=tenant_id,
        actor=audit.tenant_actor(tenant_id),
        detail={"app_id": app_id},
    )


async def create_app(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(body, {"app_id", "app_secret", "verify_token"})
    app_id = field_digits(body, "app_id")
    secret = field_str(body, "app_secret", max_length=200)
    verify_token = field_str(body, "verify_token", max_length=200)
    _app_secret(secret)  # after both are read: a missing field is named before a malformed one
    await prove_app(state, app_id, secret)
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            Q.insert_app, app_id, caller.tenant_id, *_sealed(state, app_id, secret, verify_token)
        )
        if row is None:
            raise Conflict("That app_id is already registered.", "app_exists")
        await _audit(conn, "app.registered", caller.tenant_id, app_id)
    forget_app(state, app_id)  # a cached "unknown app" must not outlive the registration
    return JSONResponse(app_json(state, row), status_code=201)


async def list_apps(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    async with state.pool.acquire() as conn:
        rows = await conn.fetch(Q.list_apps, caller.tenant_id)
    return JSONResponse({"data": [app_json(state, r) for r in rows], "next": None})


async def update_app(request: Request) -> JSONResponse:
    """A new app secret (proven again with Meta) or verify token, or both."""
    state, caller = await require_tenant(request)
    caller.require_active()
    app_id = request.path_params["app_id"]
    body = await read_object(request)
    reject_unknown(body, {"app_secret", "verify_token"})
    secret = field_str(body, "app_secret", required=False, max_length=200)
    verify_token = field_str(body, "verify_token", required=False, max_length=200)
    if secret is not None:
        _app_secret(secret)
    if secret is None and verify_token is None:
        raise Unprocessable("Give app_secret, verify_token or both.", "missing_field")
    async with state.pool.acquire() as conn:
        if await conn.fetchval(Q.tenant_owns_app, app_id, caller.tenant_id) is None:
            raise NotFound("No app with that id is yours.")
    if secret is not None:
        await prove_app(state, app_id, secret)
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            Q.update_app, app_id, caller.tenant_id, *_sealed(state, app_id, secret, verify_token)
        )
        if row is None:
            raise NotFound("No app with that id is yours.")
        await _audit(conn, "app.updated", caller.tenant_id, app_id)
    forget_app(state, app_id)  # other processes pick the new secret up within their cache time
    return JSONResponse(app_json(state, row))


async def delete_app(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    app_id = request.path_params["app_id"]
    async with state.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(Q.tenant_owns_app, app_id, caller.tenant_id) is None:
            raise NotFound("No app with that id is yours.")
        bound = await conn.fetchval(Q.numbers_of_app, app_id)
        if bound:
            raise Conflict(
                f"{bound} number(s) are bound to this app; remove them first.", "app_in_use"
            )
        await conn.execute(Q.delete_app, app_id, caller.tenant_id)
        await _audit(conn, "app.deleted", caller.tenant_id, app_id)
    forget_app(state, app_id)
    return JSONResponse({"app_id": app_id, "deleted": True})
