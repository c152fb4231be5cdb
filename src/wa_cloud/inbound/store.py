"""Storing raw webhook bodies: the write the receiver's group commit performs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from wa_cloud.db import channels
from wa_cloud.db.announce import Announcer
from wa_cloud.db.groupcommit import GroupCommit
from wa_cloud.db.queries import Q

# Bytes of bodies per INSERT: large enough that ordinary deliveries (a few KB) group by the
# hundred, small enough that a burst of 3 MB bodies never makes one huge statement.
MAX_GROUP_BYTES = 4 * 1024 * 1024


@contextlib.asynccontextmanager
async def delivery_store(pool: asyncpg.Pool) -> AsyncIterator[GroupCommit[tuple[str, bytes]]]:
    """(source, body) pairs, inserted in one statement per group, then announced to workers."""
    async with Announcer(pool, channels.DELIVERIES) as announcer:

        async def write(group: list[tuple[str, bytes]]) -> None:
            async with pool.acquire() as conn:
                await conn.execute(
                    Q.insert_deliveries, [g[0] for g in group], [g[1] for g in group]
                )
            announcer.poke()

        async with GroupCommit(
            "deliveries", write, max_bytes=MAX_GROUP_BYTES, size=lambda item: len(item[1])
        ) as store:
            yield store
