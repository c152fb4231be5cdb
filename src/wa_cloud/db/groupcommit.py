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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.wakeable import WakeableLoop
from wa_cloud.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")


class GroupCommit(WakeableLoop, Generic[T]):
    def __init__(
        self,
        name: str,
        write: Callable[[list[T]], Awaitable[Sequence[Any] | None]],
        *,
        max_group: int = 256,
        max_bytes: int | None = None,
        size: Callable[[T], int] | None = None,
        max_in_flight: int = 2,
        write_timeout: float = 10.0,
    ) -> None:
        super().__init__(f"group-commit-{name}")
        self._name = name
        self._write_group = write
        self._max_group = max_group
        # A group is also bounded by bytes (`size` of each item): one statement carrying a
        # hundred 3 MB bodies would hold everyone's commit behind one tenant's flood.
        self._max_bytes = max_bytes
        self._size = size
        self._slots = asyncio.Semaphore(max_in_flight)
        self._timeout = write_timeout
        self._waiting: list[tuple[T, asyncio.Future[Any]]] = []
        self._writes: set[asyncio.Task[None]] = set()

    async def __aexit__(self, *exc_info: object) -> None:
        await super().__aexit__(*exc_info)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def submit(self, item: T) -> Any:
        """Return once `item` is committed (with what the write said of it, if it says);
        raise `DatabaseUnavailable` if it could not be."""
        if self._closed:
            raise DatabaseUnavailable("shutting down")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._wake.set()
        return await future

    def _take(self) -> list[tuple[T, asyncio.Future[Any]]]:
        count = min(len(self._waiting), self._max_group)
        if self._max_bytes is not None and self._size is not None:
            total = 0
            for index in range(count):
                total += self._size(self._waiting[index][0])
                if total > self._max_bytes and index > 0:
                    count = index
                    break
        group = self._waiting[:count]
        del self._waiting[:count]
        return group

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                await self._slots.acquire()
                task = asyncio.create_task(self._write(self._take()))
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
            if self._closed and not self._waiting:
                return

    async def _write(self, group: list[tuple[T, asyncio.Future[Any]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                results = await self._write_group([item for item, _ in group])
        except DATABASE_ERRORS as exc:
            logger.error(
                "group commit failed",
                extra={"group": self._name, "size": len(group), "error": type(exc).__name__},
            )
            for _, future in group:
                if not future.done():
                    future.set_exception(DatabaseUnavailable("the database did not commit"))
        else:
            for index, (_, future) in enumerate(group):
                if not future.done():
                    future.set_result(None if results is None else results[index])
        finally:
            self._slots.release()
