"""Storing raw webhook bodies: the write the receiver's group commit performs."""

from __future__ import annotations

import asyncpg

from wa_cloud.db.queries import Q
from wa_cloud.groupcommit import GroupCommit


def delivery_store(pool: asyncpg.Pool) -> GroupCommit[tuple[str, bytes]]:
    """(source, body) pairs, inserted and announced to workers in one statement per group."""

    async def write(group: list[tuple[str, bytes]]) -> None:
        async with pool.acquire() as conn:
            await conn.execute(Q.insert_deliveries, [g[0] for g in group], [g[1] for g in group])

    return GroupCommit("deliveries", write)
