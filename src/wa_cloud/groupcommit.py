"""Group commit: many concurrent writers, one statement and one fsync.

A caller hands its item to `submit` and waits for the commit of the group it lands in. While
one group is being written the next one gathers, so under load each commit carries every item
that arrived during the previous one, and when idle a lone item is written at once (no timer
adds latency). Nobody returns before their row is durable; if the write fails, every waiter of
that group gets `DatabaseUnavailable`.

Used by the webhook receiver (store, then acknowledge) and by the outbox (mark a send as
dispatched before it leaves, record what Meta answered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg

from wa_cloud.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class GroupCommit(Generic[T]):
    def __init__(
        self,
        name: str,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        max_group: int = 256,
        max_in_flight: int = 2,
        write_timeout: float = 10.0,
    ) -> None:
        self._name = name
        self._write_group = write
        self._max_group = max_group
        self._slots = asyncio.Semaphore(max_in_flight)
        self._timeout = write_timeout
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._writes: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> GroupCommit[T]:
        self._runner = asyncio.create_task(self._run(), name=f"group-commit-{self._name}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closed = True
        self._wake.set()
        if self._runner is not None:
            await self._runner
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def submit(self, item: T) -> None:
        """Return once `item` is committed; raise `DatabaseUnavailable` if it could not be."""
        if self._closed:
            raise DatabaseUnavailable("shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
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
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
            if self._closed and not self._waiting:
                return

    async def _write(self, group: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._write_group([item for item, _ in group])
        except DATABASE_ERRORS as exc:
            logger.error(
                "group commit failed",
                extra={"group": self._name, "size": len(group), "error": type(exc).__name__},
            )
            for _, future in group:
                if not future.done():
                    future.set_exception(DatabaseUnavailable("the database did not commit"))
        else:
            for _, future in group:
                if not future.done():
                    future.set_result(None)
        finally:
            self._slots.release()
