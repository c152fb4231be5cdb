"""Credits and usage: the operator adds (or corrects) a tenant's credits; a tenant reads its
balance, its ledger and the model tokens its assistants used (`GET /v1/usage`).

Every movement of a balance is a ledger row written in the transaction that moves it; the
assistant's own debits are ai/usage.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_admin, require_tenant
from wa_cloud.api.pagination import limit_of
from wa_cloud.asgi import field_int, field_str, parse_uuid, read_object, reject_unknown
from wa_cloud.db.queries import Q
from wa_cloud.errors import BadRequest, NotFound, Unprocessable
from wa_cloud.state import AppState
from wa_cloud.tenants import audit

logger = logging.getLogger(__name__)

# One movement at most this many credits either way: a typo of a few digits is refused, and
# the bigint balance stays far from its end however many there are.
MAX_CREDITS_MOVE: Final = 1_000_000_000
LEDGER_DEFAULT: Final = 100
LEDGER_MAX: Final = 1000


def ledger_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "amount": row["amount"],
        "balance_before": row["balance_before"],
        "balance_after": row["balance_after"],
        "reason": row["reason"],
        "phone_number_id": row["phone_number_id"],
        "created_at": row["created_at"].isoformat(),
    }


async def add_credits(request: Request) -> JSONResponse:
    """`{"amount", "reason"}`: a positive amount adds, a negative one corrects downwards; the
    balance never goes below zero (422 `insufficient_credits`)."""
    state = require_admin(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    body = await read_object(request)
    reject_unknown(body, {"amount", "reason"})
    amount, reason = credit_fields(body)
    entry = await move_credits(state, tenant_id, amount, reason)
    return JSONResponse(
        {
            "tenant_id": str(tenant_id),
            "credits_balance": entry["balance_after"],
            "entry": ledger_json(entry),
        },
        status_code=201,
    )


def credit_fields(body: Mapping[str, Any]) -> tuple[int, str]:
    """A movement's amount and reason, checked the same for the API and the console."""
    amount = field_int(body, "amount", low=-MAX_CREDITS_MOVE, high=MAX_CREDITS_MOVE)
    if amount is None:
        raise Unprocessable("'amount' is required.", "missing_field")
    if amount == 0:
        raise Unprocessable("'amount' must not be 0.", "invalid_field")
    reason = field_str(body, "reason", max_length=500)
    return amount, reason


async def move_credits(
    state: AppState, tenant_id: UUID, amount: int, reason: str
) -> asyncpg.Record:
    """The operator's movement of a tenant's credits and its ledger row (returned), audited; the
    API and the console both move credits this way."""
    async with state.pool.acquire() as conn, conn.transaction():
        balance = await conn.fetchval(Q.lock_credits, tenant_id)
        if balance is None:
            raise NotFound("No tenant with that id.")
        if balance + amount < 0:
            raise Unprocessable(
                f"The tenant has {balance} credits: {-amount} cannot be taken.",
                "insufficient_credits",
            )
        entry = await conn.fetchrow(Q.add_credits, tenant_id, amount, reason)
        await audit.record(
            conn,
            "credits.adjusted",
            tenant_id=tenant_id,
            actor=audit.ADMIN,
            severity="info" if amount > 0 else "warning",
            detail={"amount": amount, "reason": reason, "balance_after": entry["balance_after"]},
        )
    logger.info("credits adjusted", extra={"tenant_id": str(tenant_id), "amount": amount})
    return entry


def _day(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be a date, YYYY-MM-DD (UTC).", "invalid_date") from None


async def usage(request: Request) -> JSONResponse:
    """The balance, the newest ledger rows and the tokens per number, model and feature; with
    `since`/`until` (UTC days, both included) the ledger and tokens of those days only."""
    state, caller = await require_tenant(request)
    limit = limit_of(request, default=LEDGER_DEFAULT, maximum=LEDGER_MAX)
    since, until = _day(request, "since"), _day(request, "until")
    async with state.pool.acquire() as conn:
        read = await read_usage(conn, caller.tenant_id, since=since, until=until, limit=limit)
    return JSONResponse(
        {
            "credits_balance": read.balance,
            "ledger": [ledger_json(r) for r in read.ledger],
            "tokens": [
                {
                    "phone_number_id": r["phone_number_id"],
                    "model": r["model"],
                    "feature": r["feature"],
                    "calls": r["calls"],
                    "input_tokens": r["input_tokens"],
                    "output_tokens": r["output_tokens"],
                }
                for r in read.tokens
            ],
        }
    )


@dataclass(frozen=True, slots=True)
class Usage:
    balance: int
    ledger: list[asyncpg.Record]  # newest first
    tokens: list[asyncpg.Record]  # per number, model and feature


async def read_usage(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    *,
    since: date | None = None,
    until: date | None = None,
    limit: int = LEDGER_DEFAULT,
) -> Usage:
    """A tenant's balance, its newest `limit` ledger rows and its tokens, within the UTC days
    `since`..`until` (None: open-ended); `GET /v1/usage` and the console read them this way."""
    # One snapshot: the balance and the ledger agree.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        balance = await conn.fetchval(Q.credits_balance, tenant_id)
        ledger = await conn.fetch(Q.usage_ledger, tenant_id, since, until, limit)
        tokens = await conn.fetch(Q.usage_tokens, tenant_id, since, until)
    return Usage(balance, list(ledger), list(tokens))
