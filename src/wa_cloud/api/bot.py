"""`/v1/numbers/{phone_number_id}/bot`: the number's assistant (ai/config.py has its rules).

PUT replaces the whole configuration and is the number's `bot_enabled` switch too; GET shows
it without the model key (`has_api_key` says whether one is stored) or the tools' header
values. `/v1/numbers/{phone_number_id}/tool-calls` lists what the assistant's tools were asked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.ai.config import BotConfig, bot_json, from_row, parse_config, row_values
from wa_cloud.ai.tools import open_secrets
from wa_cloud.api.auth import require_tenant
from wa_cloud.api.contacts import require_own_number
from wa_cloud.api.pagination import cursor_id, decode_cursor, limit_of, page
from wa_cloud.asgi import read_object
from wa_cloud.canonical import iso
from wa_cloud.db.queries import Q
from wa_cloud.errors import NotFound
from wa_cloud.secretbox import SecretUnreadable
from wa_cloud.state import AppState
from wa_cloud.tenants import audit
from wa_cloud.tenants.sealed import BOT_API_KEY, BOT_TOOL_SECRETS

NOT_YOURS = "No number with that phone_number_id is yours."


async def get_bot(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    async with state.pool.acquire() as conn:
        config = await load_bot(conn, caller.tenant_id, request.path_params["phone_number_id"])
    return JSONResponse(bot_json(config))


async def put_bot(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    number = request.path_params["phone_number_id"]
    config = await save_bot(state, caller.tenant_id, number, lambda _current: body)
    return JSONResponse(bot_json(config))


async def load_bot(conn: asyncpg.Connection, tenant_id: UUID, number: str) -> BotConfig:
    """The number's assistant configuration (NotFound: not the tenant's number)."""
    row = await conn.fetchrow(Q.get_bot, number, tenant_id)
    if row is None:
        raise NotFound(NOT_YOURS)
    return from_row(row if row["configured"] else None, enabled=row["bot_enabled"])


async def save_bot(
    state: AppState,
    tenant_id: UUID,
    number: str,
    body_for: Callable[[BotConfig], Mapping[str, Any]],
) -> BotConfig:
    """Replace the number's configuration with `body_for(current)`, checked by the PUT body's
    rules, and audit it; `PUT /v1/numbers/{id}/bot` gives its body, the console's form lays its
    fields over the current configuration (read in this transaction). The caller checks the
    tenant is active."""
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(Q.get_bot, number, tenant_id)
        if row is None:
            raise NotFound(NOT_YOURS)
        current = from_row(row if row["configured"] else None, enabled=row["bot_enabled"])
        try:
            stored = open_secrets(state.box, number, row["tool_secrets_enc"])
        except SecretUnreadable:
            stored = {}  # (a key no longer configured): the values must be given again
        config = parse_config(body_for(current), current=current, tool_secrets=stored)
        if config.api_key is not None:
            sealed = state.box.seal(config.api_key, context=BOT_API_KEY.context(number))
        elif config.has_api_key:
            sealed = row["api_key_enc"]  # the same endpoint keeps its key
        else:
            sealed = None
        secrets = None
        if config.tool_secrets:
            context = BOT_TOOL_SECRETS.context(number)
            secrets = state.box.seal(json.dumps(config.tool_secrets), context=context)
        await conn.execute(Q.put_bot, number, tenant_id, sealed, *row_values(config), secrets)
        await conn.execute(Q.set_bot_enabled, number, tenant_id, config.enabled)
        await audit.record(
            conn,
            "bot.configured",
            tenant_id=tenant_id,
            actor=audit.tenant_actor(tenant_id),
            detail={
                "phone_number_id": number,
                "enabled": config.enabled,
                "model": config.model,
                "tools": [t.name for t in config.tools],
            },
        )
    return config


async def list_tool_calls(request: Request) -> JSONResponse:
    """The assistant's tool calls on a number, newest first: the arguments the model gave, the
    status or the error, the duration (never a header's value)."""
    state, caller = await require_tenant(request)
    number = request.path_params["phone_number_id"]
    limit = limit_of(request)
    (before,) = decode_cursor(request, cursor_id) or (None,)
    async with state.pool.acquire() as conn:
        await require_own_number(conn, caller.tenant_id, number)
        rows = await conn.fetch(Q.list_tool_calls, number, caller.tenant_id, before, limit + 1)
    items = [
        {
            "id": r["id"],
            "tool": r["tool"],
            "arguments": r["arguments"],
            "status": r["status"],
            "error": r["error"],
            "duration_ms": r["duration_ms"],
            "contact": r["wa_id"],
            "reply_id": r["reply_id"],
            "created_at": iso(r["created_at"]),
        }
        for r in rows
    ]
    return JSONResponse(page(items, limit, "id"))
