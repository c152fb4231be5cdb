"""NOTIFY after the commit, not inside it.

PostgreSQL serialises every transaction that notifies: it holds one lock for the whole
database from before its commit until after it (the queue must be in commit order), WAL flush
included. A notifying durable commit therefore waits for every other notifying commit's fsync
in turn, outside any group commit. The webhook receiver's durable insert must not join that
queue: it commits without a NOTIFY, and an `Announcer` then tells the listeners in a
transaction of its own with asynchronous commit (the lock is held for microseconds, and nobody
waits on it for an answer). Pokes that arrive while one NOTIFY is on its way are folded into the
next one. A NOTIFY that fails is logged and dropped: the listeners also poll.
"""

from __future__ import annotations

import logging

import asyncpg

from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q
from wa_cloud.db.wakeable import WakeableLoop

logger = logging.getLogger(__name__)


class Announcer(WakeableLoop):
    """NOTIFY `channel` after what `poke` says was committed; the last poke is still announced
    as the block ends."""

    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        super().__init__(f"announce-{channel}")
        self._pool = pool
        self._channel = channel
        self._poked = False

    def poke(self) -> None:
        """Something was committed for the listeners: they hear of it soon, once."""
        self._poked = True
        self._wake.set()

    async def _run(self) -> None:
        while not (self._closed and not self._poked):
            await self._wake.wait()
            self._wake.clear()
            if not self._poked:
                continue
            self._poked = False
            try:
                async with self._pool.acquire() as conn:
                    await conn.execute(Q.announce, self._channel)
            except DATABASE_ERRORS as exc:
                logger.warning(
                    "notify failed", extra={"channel": self._channel, "error": type(exc).__name__}
                )
