"""`/v1/numbers/{phone_number_id}/bot`: the number's assistant (ai/config.py has its rules).

PUT replaces the whole configuration and is the number's `bot_enabled` switch too; GET shows
it without the model key (`has_api_key` says whether one is stored).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.ai.config import bot_json, from_row, parse_config, row_values
from wa_cloud.api.auth import require_tenant
from wa_cloud.asgi import read_object
from wa_cloud.db.queries import Q
from wa_cloud.errors import NotFound
from wa_cloud.tenants import audit
from wa_cloud.tenants.sealed import BOT_API_KEY

NOT_YOURS = "No number with that phone_number_id is yours."


async def get_bot(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(
            Q.get_bot, request.path_params["phone_number_id"], caller.tenant_id
        )
    if row is None:
        raise NotFound(NOT_YOURS)
    config = from_row(row if row["configured"] else None, enabled=row["bot_enabled"])
    return JSONResponse(bot_json(config))


async def put_bot(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    number = request.path_params["phone_number_id"]
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(Q.get_bot, number, caller.tenant_id)
        if row is None:
            raise NotFound(NOT_YOURS)
        current = from_row(row if row["configured"] else None, enabled=row["bot_enabled"])
        config = parse_config(body, current=current)
        if config.api_key is not None:
            sealed = state.box.seal(config.api_key, context=BOT_API_KEY.context(number))
        elif config.has_api_key:
            sealed = row["api_key_enc"]  # the same endpoint keeps its key
        else:
            sealed = None
        await conn.execute(Q.put_bot, number, caller.tenant_id, sealed, *row_values(config))
        await conn.execute(Q.set_bot_enabled, number, caller.tenant_id, config.enabled)
        await audit.record(
            conn,
            "bot.configured",
            tenant_id=caller.tenant_id,
            actor=audit.tenant_actor(caller.tenant_id),
            detail={"phone_number_id": number, "enabled": config.enabled, "model": config.model},
        )
    return JSONResponse(bot_json(config))
