"""The worker runtime: consumers woken by NOTIFY (polling as the fallback), run supervised.

A consumer is a small object (`Consumer`): a name, the NOTIFY channel that wakes it, how long it
sleeps at most when idle, what it holds while it runs, and `step()`, which claims what is due
and handles it (or starts handling it). `run_consumer` is the one loop around every consumer:
it clears the consumer's wake before each step, backs off with jitter while the database is
unreachable, and waits for a NOTIFY or the poll interval when the step claimed nothing.

Any number of workers can run: they coordinate only through PostgreSQL (SKIP LOCKED claims with
leases). One dedicated LISTEN connection per worker feeds a channel -> consumers table; it is
re-opened when it drops, and while it is down the poll intervals alone keep work moving.

Every loop runs supervised: one that dies (a bug, not the database, which `run_consumer` rides
out) is logged, counted (`wa_worker_restarts_total`) and restarted with backoff, and `Health`
says which loops are down, for `/readyz`. `stop()` lets steps in flight finish, then cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from wa_cloud.backoff import Backoff
from wa_cloud.db.pool import DATABASE_ERRORS, connect
from wa_cloud.resources import Resources

logger = logging.getLogger(__name__)

DATABASE_BACKOFF = Backoff(base=0.5, cap=10.0)
RESTART_BACKOFF = Backoff(base=0.5, cap=30.0)
KEEPALIVE_SECONDS = 5.0  # the LISTEN connection's probe: a dead socket is noticed this soon
# How long a stop waits for consumers to drain: longer than the longest drain (the sender's
# 10 s), so a drain finishes, or cancels its own jobs, before the stop cancels the loop.
STOP_SECONDS = 15.0


class Consumer(Protocol):
    """One kind of work the worker does (deliveries, sends, media, forwards, retention...)."""

    @property
    def name(self) -> str:
        """In logs, metrics and /readyz."""
        ...

    @property
    def channel(self) -> str | None:
        """The NOTIFY channel that wakes it (None: the poll interval only)."""
        ...

    @property
    def poll_seconds(self) -> float:
        """The longest it sleeps when nothing is due and nothing wakes it."""
        ...

    @property
    def wake(self) -> asyncio.Event:
        """Set by a NOTIFY on its channel, and by the consumer itself when a job finishes."""
        ...

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """What it holds while it runs; on the way out, jobs in flight are drained."""
        ...

    async def step(self) -> float | None:
        """Claim what is due and handle it (or start handling it). None: something was claimed,
        step again at once; a number: nothing was, wait at most that long (or until woken)."""
        ...


async def run_consumer(consumer: Consumer, stopping: asyncio.Event) -> None:
    """The one loop of every consumer, until `stopping` is set."""
    failures = 0
    async with consumer.running():
        while not stopping.is_set():
            # Cleared before the step: a NOTIFY (or a finished job) during it wakes the wait.
            consumer.wake.clear()
            try:
                wait = await consumer.step()
                failures = 0
            except DATABASE_ERRORS as exc:
                failures += 1
                logger.warning(
                    "consumer cannot reach the database",
                    extra={"consumer": consumer.name, "error": repr(exc)},
                )
                wait = DATABASE_BACKOFF.delay(failures)
            if wait is None:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumer.wake.wait(), wait)


def lease_expired(attempts: int, max_attempts: int) -> str | None:
    """Why a row claimed for the `attempts`-th time is given up, or None to try it. A row is
    claimed again only when its lease ran out (the worker holding it died or hung), so past
    `max_attempts` the row itself is the likely cause and is not tried again."""
    if attempts <= max_attempts:
        return None
    return f"gave up: the lease expired on {attempts - 1} attempts"


def idle_wait(poll_seconds: float, due_in: float | None, floor: float = 0.001) -> float:
    """How long an idle consumer sleeps: until the next row is due (`due_in` seconds, None: none
    is), never longer than its poll interval."""
    if due_in is None:
        return poll_seconds
    return min(poll_seconds, max(floor, float(due_in)))


class InFlight:
    """The jobs a consumer runs at once, each on behalf of a tenant: free slots, the tenants at
    their share (so a claim skips them), and a wake when one finishes (a slot is free again;
    None: nothing to wake)."""

    def __init__(
        self, wake: asyncio.Event | None, limit: int, per_tenant: int | None = None
    ) -> None:
        self._wake = wake
        self.limit = max(1, limit)
        self.per_tenant = max(1, per_tenant or limit)
        self._tasks: dict[asyncio.Task[None], UUID | None] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def free(self) -> int:
        return max(0, self.limit - len(self._tasks))

    def busy(self) -> Counter[UUID]:
        return Counter(t for t in self._tasks.values() if t is not None)

    def full_tenants(self) -> list[UUID]:
        return [tenant for tenant, n in self.busy().items() if n >= self.per_tenant]

    def start(self, job: Coroutine[Any, Any, None], tenant: UUID | None = None) -> None:
        task = asyncio.create_task(job)
        self._tasks[task] = tenant
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if self._wake is not None:
            self._wake.set()

    async def join(self) -> None:
        """Until every job started so far has finished."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def drain(self, seconds: float) -> None:
        """Let jobs finish for up to `seconds`, then cancel the rest (their rows are claimed
        again when their leases run out)."""
        tasks = list(self._tasks)
        if not tasks:
            return
        try:
            if seconds > 0:
                await asyncio.wait(tasks, timeout=seconds)
        finally:
            # Also when the drain itself is cancelled (a stop past its deadline): no job may
            # outlive the resources it writes through.
            unfinished = [task for task in tasks if not task.done()]
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def draining(self, seconds: float) -> AsyncIterator[None]:
        """A consumer's `running()`: the block, then `drain(seconds)` however it ends."""
        try:
            yield
        finally:
            await self.drain(seconds)


@dataclass(slots=True)
class LoopState:
    running: bool = False
    restarts: int = 0
    last_error: str | None = None
    down_since: float | None = None


@dataclass(slots=True)
class Health:
    """The worker's loops as /readyz reports them."""

    loops: dict[str, LoopState] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(state.running for state in self.loops.values())

    def as_json(self) -> dict[str, object]:
        return {
            name: {
                "running": state.running,
                "restarts": state.restarts,
                **({"last_error": state.last_error} if state.last_error else {}),
            }
            for name, state in sorted(self.loops.items())
        }


def standard_consumers(resources: Resources, *, concurrency: int) -> list[Consumer]:
    """Every consumer a worker runs: `concurrency` delivery indexers, the sender, inbound
    media, the forwarder, the assistant's replies and follow-ups, the web sessions' watchdog,
    the campaign runner and retention."""
    from wa_cloud.ai.followups import FollowUpSender
    from wa_cloud.ai.replies import Replier
    from wa_cloud.campaigns.runner import CampaignRunner
    from wa_cloud.forwarding.forwarder import Forwarder
    from wa_cloud.inbound.processor import DeliveryIndexer
    from wa_cloud.media.inbound import MediaFetcher
    from wa_cloud.outbox.sender import Sender
    from wa_cloud.providers.watchdog import SessionWatchdog
    from wa_cloud.retention import Retention

    return [
        Sender.from_resources(resources),
        MediaFetcher.from_resources(resources),
        Forwarder.from_resources(resources),
        Replier.from_resources(resources),
        FollowUpSender.from_resources(resources),
        SessionWatchdog.from_resources(resources),
        CampaignRunner.from_resources(resources),
        Retention(resources.pool, resources.settings),
        *(DeliveryIndexer.from_resources(resources, index=i) for i in range(concurrency)),
    ]


class Worker:
    def __init__(
        self,
        resources: Resources,
        *,
        concurrency: int = 2,
        consumers: list[Consumer] | None = None,
    ) -> None:
        self._resources = resources
        self._metrics = resources.metrics
        self.consumers = (
            consumers
            if consumers is not None
            else standard_consumers(resources, concurrency=concurrency)
        )
        self._by_channel: dict[str, list[Consumer]] = {}
        for consumer in self.consumers:
            if consumer.channel is not None:
                self._by_channel.setdefault(consumer.channel, []).append(consumer)
        self._stopping = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.health = Health()

    async def __aenter__(self) -> Worker:
        self._tasks = []
        if self._by_channel:
            self._listener = self.supervise("listen", self._listen)
        for consumer in self.consumers:
            self.supervise(consumer.name, functools.partial(run_consumer, consumer, self._stopping))
        logger.info("worker started", extra={"consumers": [c.name for c in self.consumers]})
        return self

    def supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run `run` until the worker stops, restarted with backoff whenever it dies."""
        state = self.health.loops.setdefault(name, LoopState())
        task = asyncio.create_task(self._supervised(name, state, run), name=f"worker-{name}")
        self._tasks.append(task)
        return task

    async def _supervised(
        self, name: str, state: LoopState, run: Callable[[], Awaitable[None]]
    ) -> None:
        while not self._stopping.is_set():
            state.running, state.down_since = True, None
            try:
                await run()
                return  # loops return only when the worker stops
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                state.running, state.down_since = False, time.monotonic()
                state.restarts += 1
                state.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self._metrics.inc("wa_worker_restarts_total", loop=name)
                logger.exception("worker loop died, restarting", extra={"loop": name})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stopping.wait(), RESTART_BACKOFF.delay(state.restarts)
                    )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _wake_listeners(self) -> None:
        """Every consumer that a NOTIFY wakes: what was stored while nobody listened is
        looked at now (retention, on its own clock, is not)."""
        for consumers in self._by_channel.values():
            for consumer in consumers:
                consumer.wake.set()

    def request_stop(self) -> None:
        """From a signal handler: the worker drains and `run_forever` returns."""
        self._stopping.set()
        for consumer in self.consumers:
            consumer.wake.set()

    async def stop(self, deadline: float = STOP_SECONDS) -> None:
        """Let steps in flight finish (each consumer drains its jobs), then stop."""
        self.request_stop()
        if self._listener is not None:
            self._listener.cancel()
        loops = [task for task in self._tasks if task is not self._listener]
        _, pending = await asyncio.wait(loops, timeout=deadline) if loops else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        logger.info("worker stopped")

    async def run_forever(self) -> None:
        async with self:
            await self._stopping.wait()

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        for consumer in self._by_channel.get(channel, ()):
            consumer.wake.set()

    async def _listen(self) -> None:
        url = self._resources.settings.database_url
        if not url:
            raise ValueError("the worker needs settings.database_url")
        failures = 0
        while not self._stopping.is_set():
            connection: asyncpg.Connection | None = None
            try:
                connection = await connect(url)
                for channel in self._by_channel:
                    await connection.add_listener(channel, self._notified)
                failures = 0
                self._wake_listeners()
                while not connection.is_closed():
                    await asyncio.sleep(KEEPALIVE_SECONDS)
                    # Notice a dead socket; bounded, as a half-open one would never answer.
                    await connection.execute("SELECT 1", timeout=KEEPALIVE_SECONDS)
            except DATABASE_ERRORS:
                failures += 1
                logger.warning("listen connection lost, reconnecting")
                await asyncio.sleep(DATABASE_BACKOFF.delay(failures))
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)
