"""The worker loop: wake on NOTIFY (polling as the fallback), claim, process, repeat.

Any number of workers can run: they coordinate only through PostgreSQL (SKIP LOCKED claims with
leases). The LISTEN connection is dedicated and re-opened when it drops; while it is down the
poll interval alone keeps work moving.

Every loop runs supervised: one that dies (a bug, not the database, which each loop rides out
itself) is logged, counted (`wa_worker_restarts_total`) and restarted with backoff, and
`Health` says which loops are down, for `/readyz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

import asyncpg

from wa_cloud import retention
from wa_cloud.backoff import Backoff
from wa_cloud.config import Settings
from wa_cloud.db.groupcommit import DATABASE_ERRORS
from wa_cloud.db.pool import connect
from wa_cloud.forwarding import forwarder
from wa_cloud.graph.client import GraphClient
from wa_cloud.inbound.processor import RetryPolicy, process_batch
from wa_cloud.media import inbound as media_inbound
from wa_cloud.metrics import Metrics
from wa_cloud.outbox import enqueue
from wa_cloud.outbox.sender import Sender
from wa_cloud.providers.cloud import cloud_providers
from wa_cloud.secretbox import SecretBox
from wa_cloud.urlguard import GuardedClient

logger = logging.getLogger(__name__)

CHANNEL = "wa_deliveries"
RESTART_BACKOFF = Backoff(base=0.5, cap=30.0)


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


class Worker:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        metrics: Metrics,
        graph: GraphClient,
        box: SecretBox,
        *,
        concurrency: int = 2,
        http: GuardedClient | None = None,
    ) -> None:
        self._settings = settings
        self._sender = Sender(
            pool,
            graph,
            box,
            metrics,
            lease_seconds=settings.worker_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
        )
        self._media = media_inbound.MediaFetcher(
            pool,
            cloud_providers(graph, box),
            max_attempts=settings.worker_max_attempts,
            lease_seconds=settings.worker_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
        )
        # Events to tenants' webhooks, on the process's shared client (its own when not given).
        self._forwarder = forwarder.Forwarder(
            pool,
            box,
            metrics,
            http=http,
            backoff=Backoff(
                base=settings.forward_retry_base_seconds, cap=forwarder.RETRY_CAP_SECONDS
            ),
            max_attempts=settings.forward_max_attempts,
            lease_seconds=settings.worker_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
            allow_private_urls=settings.allow_private_urls,
        )
        self._pool = pool
        self._metrics = metrics
        self._concurrency = concurrency
        self._policy = RetryPolicy(max_attempts=settings.worker_max_attempts)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.health = Health()

    async def __aenter__(self) -> Worker:
        self._tasks = []
        self._start("listen", self._listen)  # first: `stop` cancels it, the rest drain
        self._start("sender", lambda: self._sender.run(self._stopping))
        self._start("media", lambda: self._media.run(self._stopping))
        self._start("forwarder", lambda: self._forwarder.run(self._stopping))
        self._start("retention", self._retention)
        for i in range(self._concurrency):
            self._start(f"deliveries-{i}", lambda i=i: self._loop(i))
        logger.info("worker started", extra={"concurrency": self._concurrency})
        return self

    def _start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        state = self.health.loops.setdefault(name, LoopState())
        task = asyncio.create_task(self._supervise(name, state, run), name=f"worker-{name}")
        self._tasks.append(task)
        return task

    async def _supervise(
        self, name: str, state: LoopState, run: Callable[[], Awaitable[None]]
    ) -> None:
        """Run a loop until the worker stops; restart it, with backoff, whenever it dies."""
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

    async def stop(self, deadline: float = 10.0) -> None:
        """Let batches in flight finish (they are one transaction each), then stop."""
        self._stopping.set()
        self._wake.set()
        self._sender.wake.set()
        self._media.wake.set()
        self._forwarder.wake.set()
        loops, listener = self._tasks[1:], self._tasks[:1]
        for task in listener:
            task.cancel()
        _, pending = await asyncio.wait(loops, timeout=deadline) if loops else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        logger.info("worker stopped")

    async def run_forever(self) -> None:
        async with self:
            await self._stopping.wait()

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        if channel == enqueue.CHANNEL:
            self._sender.wake.set()
        elif channel == media_inbound.CHANNEL:
            self._media.wake.set()
        elif channel == forwarder.CHANNEL:
            self._forwarder.wake.set()
        else:
            self._wake.set()

    async def _listen(self) -> None:
        assert self._settings.database_url
        backoff = 0.5
        while not self._stopping.is_set():
            connection: asyncpg.Connection | None = None
            try:
                connection = await connect(self._settings.database_url)
                await connection.add_listener(CHANNEL, self._notified)
                await connection.add_listener(enqueue.CHANNEL, self._notified)
                await connection.add_listener(media_inbound.CHANNEL, self._notified)
                await connection.add_listener(forwarder.CHANNEL, self._notified)
                backoff = 0.5
                # Anything stored while we were not listening.
                self._wake.set()
                self._sender.wake.set()
                self._media.wake.set()
                self._forwarder.wake.set()
                while not connection.is_closed():
                    await asyncio.sleep(5)
                    await connection.execute("SELECT 1")  # keepalive: notice a dead socket
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                logger.warning("listen connection lost, reconnecting")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)

    async def _retention(self) -> None:
        """Raw bodies, forward payloads, old media and stale pacing rows out, every interval;
        the pass itself takes a lock, so one worker at a time does it."""
        while not self._stopping.is_set():
            try:
                await retention.run_retention(self._pool, self._settings)
            except DATABASE_ERRORS as exc:
                logger.warning("retention pass failed", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), retention.RETENTION_INTERVAL_SECONDS)

    async def _loop(self, index: int) -> None:
        settings = self._settings
        backoff = 0.5
        while not self._stopping.is_set():
            # Cleared before claiming: a NOTIFY that lands while we work wakes the next wait.
            self._wake.clear()
            try:
                outcome = await process_batch(
                    self._pool,
                    batch_size=settings.worker_batch_size,
                    lease_seconds=settings.worker_lease_seconds,
                    policy=self._policy,
                    metrics=self._metrics,
                )
                backoff = 0.5
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("worker cannot reach the database", extra={"error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            if outcome.claimed:
                continue  # there may be more: go again without waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), settings.worker_poll_seconds)
