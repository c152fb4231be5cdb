"""Live updates for open console pages: PostgreSQL NOTIFY in, Server-Sent Events out.

Triggers (migration 0017) NOTIFY `wa_console` with `<tenant id>|<kind>|<phone number id>` when
a message is stored or changes status, a contact's bot state or memory changes, or a number or
its web session changes (QR, state), for the tenants someone watches: the hub keeps a row in
`console_watch` for each tenant with an open page (migration 0021), so a tenant nobody watches
costs no NOTIFY, and no place in the queue PostgreSQL keeps for notifying commits. One LISTEN
connection per web process, opened with the first open page, fans each notification out to
the pages of that tenant (and the operator's); a page then fetches what changed.
Notifications carry no content, so a page only ever shows what its own authorised request
returns. A lost connection is reopened with backoff and every page is told to refresh, since
notifications sent meanwhile are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from wa_cloud.db import channels
from wa_cloud.db.queries import Q

logger = logging.getLogger(__name__)

# A page that falls this far behind (a stalled browser) misses nothing that matters: it is
# told to refresh everything instead of queueing more.
QUEUE_SIZE = 256
HEARTBEAT_SECONDS = 15.0
# Open streams per process, and per tenant (the operator counts as one): each holds a task and
# a connection of the web server (never a database connection), and one business opening
# stream after stream must not take the room every other tenant's pages need.
MAX_STREAMS = 2000
MAX_TENANT_STREAMS = 40
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)
# How long a new page waits for the LISTEN to be in place before it streams anyway.
READY_SECONDS = 5.0
# A watch lasts this long from its last refresh (every heartbeat while pages are open): a
# process that dies leaves a watch that lapses by itself.
WATCH_SECONDS = 60.0
# A write that began before a tenant's watch and commits after it sends no NOTIFY: a page that
# started the watch refreshes once more after this long, when such a write has committed.
WATCH_SETTLE_SECONDS = 2.0
KINDS = frozenset({"message", "contact", "number"})


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # message | contact | number | refresh
    phone_number_id: str


REFRESH = Change("refresh", "")


@dataclass(eq=False)
class _Subscriber:
    tenant_id: UUID | None  # None: the operator, who sees every tenant's changes
    queue: asyncio.Queue[Change] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def put(self, change: Change) -> None:
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            # Drop the backlog: one refresh says everything.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(REFRESH)


def parse(payload: str) -> tuple[UUID, Change] | None:
    tenant, _, rest = payload.partition("|")
    kind, _, number = rest.partition("|")
    # A number id is digits (the API's rule): nothing else reaches a stream's `data:` line.
    if kind not in KINDS or not (number.isascii() and number.isdigit()):
        return None
    try:
        return UUID(tenant), Change(kind, number)
    except ValueError:
        return None


class LiveHub:
    """The process's one LISTEN connection and the pages listening through it."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._subscribers: set[_Subscriber] = set()
        self._per_tenant: dict[UUID | None, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Set while the LISTEN is in place: a new page waits for it, then refreshes once, so a
        # change between rendering the page and listening is not missed.
        self._ready = asyncio.Event()
        self._conn: asyncpg.Connection | None = None  # the LISTEN connection, while it is up
        self._conn_lock = asyncio.Lock()  # one statement at a time on it
        # Tenants (None: the operator) whose watch this hub wrote, with when it lapses.
        self._watching: dict[UUID | None, float] = {}

    def has_room(self, tenant_id: UUID | None) -> bool:
        """Whether the process, and the tenant's share of it, take another stream."""
        return (
            len(self._subscribers) < MAX_STREAMS
            and self._per_tenant.get(tenant_id, 0) < MAX_TENANT_STREAMS
        )

    @contextlib.asynccontextmanager
    async def subscribe(
        self, tenant_id: UUID | None
    ) -> AsyncIterator[asyncio.Queue[Change] | None]:
        """The tenant's changes (every tenant's for None), or None when there is no room: the
        check and the count are one step, so streams opened all at once cannot overshoot."""
        if self._closed:
            raise RuntimeError("the live hub is closed")
        if not self.has_room(tenant_id):
            yield None
            return
        subscriber = _Subscriber(tenant_id)
        self._subscribers.add(subscriber)
        self._per_tenant[tenant_id] = self._per_tenant.get(tenant_id, 0) + 1
        try:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._listen(), name="console-live")
            # (Inside the try: a page gone while it waits gives its place back.)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), READY_SECONDS)
            self._settle(await self._watch([tenant_id]), now=False)
            subscriber.put(REFRESH)
            yield subscriber.queue
        finally:
            self._subscribers.discard(subscriber)
            self._per_tenant[tenant_id] -= 1
            if not self._per_tenant[tenant_id]:
                del self._per_tenant[tenant_id]

    @property
    def listening(self) -> int:
        return len(self._subscribers)

    async def aclose(self) -> None:
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.put(Change("closed", ""))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(
        self, tenants: list[UUID | None], *, refresh: bool = False
    ) -> set[UUID | None]:
        """Make sure the triggers notify for `tenants` (with `refresh`, for another
        WATCH_SECONDS even if they do); the ones whose watch this hub had not kept until now
        (their pages may have missed a change). A watch not written stays due: the next
        heartbeat tries again."""
        now = asyncio.get_running_loop().time()
        lapsed = {t for t in tenants if self._watching.get(t, 0.0) <= now}
        if not lapsed and not refresh:
            return set()  # watched already, and the heartbeat keeps it so
        async with self._conn_lock:
            conn = self._conn  # read under the lock: the LISTEN task drops it when lost
            if conn is None:
                return set()  # written on connect, before any page is told it is ready
            try:
                await conn.execute(Q.console_watch, tenants, WATCH_SECONDS, timeout=5)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                logger.warning("console watch not written")
                return set()
        for tenant in tenants:
            self._watching[tenant] = now + WATCH_SECONDS
        return lapsed

    def _settle(self, tenants: set[UUID | None], *, now: bool = True) -> None:
        """Pages of tenants whose watch just began again refresh (with `now`, at once) and
        once more after WATCH_SETTLE_SECONDS: a write that began before the watch and commits
        after it sends no NOTIFY."""
        if not tenants:
            return

        def refresh() -> None:
            for subscriber in list(self._subscribers):
                if subscriber.tenant_id in tenants:
                    subscriber.put(REFRESH)

        if now:
            refresh()
        asyncio.get_running_loop().call_later(WATCH_SETTLE_SECONDS, refresh)

    def _deliver(self, payload: str) -> None:
        parsed = parse(payload)
        if parsed is None:
            return
        tenant_id, change = parsed
        for subscriber in list(self._subscribers):
            if subscriber.tenant_id is None or subscriber.tenant_id == tenant_id:
                subscriber.put(change)

    async def _listen(self) -> None:
        attempt = 0
        while self._subscribers and not self._closed:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._url, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
                attempt += 1
                continue
            try:
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(channels.CONSOLE, lambda *a: self._deliver(a[3]))
                self._conn = conn
                self._watching.clear()  # written again: they may have lapsed while away
                self._settle(await self._watch(list(self._per_tenant), refresh=True), now=False)
                self._ready.set()
                if attempt:  # notifications sent while we were away are gone
                    for subscriber in list(self._subscribers):
                        subscriber.put(REFRESH)
                attempt = 0
                # Stay connected while anyone listens; check now and then that someone does.
                while self._subscribers and not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), HEARTBEAT_SECONDS)
                    if self._subscribers and not lost.is_set():
                        self._settle(await self._watch(list(self._per_tenant), refresh=True))
                if lost.is_set():
                    logger.warning("console live connection lost; reconnecting")
                    attempt = 1
            except (OSError, asyncpg.PostgresError):
                attempt = 1
            finally:
                self._ready.clear()
                self._conn = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
