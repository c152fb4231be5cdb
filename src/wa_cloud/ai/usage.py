"""What the assistant costs a tenant: credits debited per reply, model tokens recorded per call.

Both run on the caller's connection, inside the transaction that finishes the reply (or stores
what a media file said), so a reply, its debit and its usage commit together or not at all.
The operator adds credits with `POST /v1/admin/tenants/{id}/credits` (api/credits.py); a
tenant reads all of it with `GET /v1/usage`.
"""

from __future__ import annotations

from typing import Final, Literal, get_args
from uuid import UUID

import asyncpg

from wa_cloud.db.queries import Q

Feature = Literal["reply", "transcription", "vision", "speech", "extraction", "follow_up"]
FEATURES: Final = frozenset(get_args(Feature))


async def record_tokens(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    phone_number_id: str,
    model: str,
    feature: Feature,
    input_tokens: int,
    output_tokens: int,
) -> None:
    """Add one model call and its tokens to today's (UTC) row for the tenant, number, model
    and feature."""
    if feature not in FEATURES:
        raise ValueError(f"unknown usage feature {feature!r}")
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts must not be negative")
    await conn.execute(
        Q.record_tokens, tenant_id, phone_number_id, model, feature, input_tokens, output_tokens
    )


async def debit_reply(
    conn: asyncpg.Connection, tenant_id: UUID, phone_number_id: str, reply_id: int, amount: int
) -> int | None:
    """Take `amount` credits for reply job `reply_id`, with its ledger row (reason 'reply').

    Returns the balance after it, or None when the balance is short (nothing changed). A job is
    debited once: debiting it again changes nothing and returns the balance as it is (should two
    transactions debit one job at the very same time, the second fails on the ledger's unique
    `reply_id` rather than debit twice). Nothing to take (0): the balance, and no ledger row.
    """
    if amount < 0:
        raise ValueError("a reply's debit must not be negative")
    if amount == 0:
        return await credits_balance(conn, tenant_id)
    row = await conn.fetchrow(Q.debit_reply, tenant_id, phone_number_id, reply_id, amount)
    if row["debited"] is not None:
        debited: int = row["debited"]
        return debited
    if row["repeated"]:
        balance: int = row["balance"]
        return balance
    return None


async def credits_balance(conn: asyncpg.Connection, tenant_id: UUID) -> int:
    """The tenant's balance (0 for a tenant that does not exist)."""
    balance: int = await conn.fetchval(Q.credits_balance, tenant_id)
    return balance
