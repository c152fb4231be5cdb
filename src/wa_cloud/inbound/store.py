"""Storing raw webhook bodies: the write the receiver's group commit performs."""

from __future__ import annotations

import asyncpg

from wa_cloud.db.groupcommit import GroupCommit
from wa_cloud.db.queries import Q

# Bytes of bodies per INSERT: large enough that ordinary deliveries (a few KB) group by the
# hundred, small enough that a burst of 3 MB bodies never makes one huge statement.
MAX_GROUP_BYTES = 4 * 1024 * 1024


def delivery_store(pool: asyncpg.Pool) -> GroupCommit[tuple[str, bytes]]:
    """(source, body) pairs, inserted and announced to workers in one statement per group."""

    async def write(group: list[tuple[str, bytes]]) -> None:
        async with pool.acquire() as conn:
            await conn.execute(Q.insert_deliveries, [g[0] for g in group], [g[1] for g in group])

    return GroupCommit(
        "deliveries", write, max_bytes=MAX_GROUP_BYTES, size=lambda item: len(item[1])
    )
