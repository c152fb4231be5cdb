"""Group commit: many concurrent webhook bodies, one INSERT and one fsync.

A request hands its body to `submit` and waits for the commit of the group it lands in. While
one group is being written the next one gathers, so under load each commit carries every body
that arrived during the previous one, and when idle a lone body is written at once (no timer
adds latency). Nobody is acknowledged before their row is durable; if the write fails, every
waiter of that group gets `DatabaseUnavailable` and answers 503.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from wa_cloud.db.queries import Q
from wa_cloud.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)


class GroupCommitter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_group: int = 256,
        max_in_flight: int = 2,
        write_timeout: float = 10.0,
    ) -> None:
        self._pool = pool
        self._max_group = max_group
        self._slots = asyncio.Semaphore(max_in_flight)
        self._timeout = write_timeout
        self._waiting: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._flushes: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> GroupCommitter:
        self._runner = asyncio.create_task(self._run(), name="group-commit")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closed = True
        self._wake.set()
        if self._runner is not None:
            await self._runner
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def submit(self, source: str, body: bytes) -> None:
        """Return once `body` is committed; raise `DatabaseUnavailable` if it could not be."""
        if self._closed:
            raise DatabaseUnavailable("the receiver is shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((source, body, future))
        self._wake.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                await self._slots.acquire()
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                task = asyncio.create_task(self._write(group))
                self._flushes.add(task)
                task.add_done_callback(self._flushes.discard)
            if self._closed and not self._waiting:
                return

    async def _write(self, group: list[tuple[str, bytes, asyncio.Future[None]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout), self._pool.acquire() as conn:
                await conn.execute(
                    Q.insert_deliveries, [g[0] for g in group], [g[1] for g in group]
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            logger.error(
                "webhook group commit failed",
                extra={"group_size": len(group), "error": type(exc).__name__},
            )
            for _, _, future in group:
                if not future.done():
                    future.set_exception(
                        DatabaseUnavailable("the database did not accept the delivery")
                    )
        else:
            for _, _, future in group:
                if not future.done():
                    future.set_result(None)
        finally:
            self._slots.release()
