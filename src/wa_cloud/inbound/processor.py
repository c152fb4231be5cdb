"""Stored deliveries into the index: claim a batch, index it set-based, commit once.

Claiming commits a lease (and counts the attempt) before any work, so a worker that dies
mid-batch leaves rows that another worker takes once the lease runs out, and a delivery that
kills every worker that touches it is quarantined after `max_attempts` instead of looping.
Marking a delivery processed checks the lease, so two workers never both commit one delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from wa_cloud.backoff import Backoff
from wa_cloud.db import channels
from wa_cloud.db.queries import Q
from wa_cloud.errors import WaCloudError
from wa_cloud.events import EchoMessage, InboundMessage, StatusKind, StatusUpdate
from wa_cloud.inbound.gateway import parse_gateway_delivery
from wa_cloud.inbound.index import IndexResult, Item, index_batch
from wa_cloud.inbound.parse import InvalidDelivery, parse_delivery
from wa_cloud.metrics import Metrics
from wa_cloud.resources import Resources
from wa_cloud.worker import lease_expired

logger = logging.getLogger(__name__)


class LeaseLost(WaCloudError):
    """Our lease ran out and another worker may own the delivery now."""


PROCESSING_BACKOFF = Backoff(base=1.0, cap=600.0)
MIN_BATCH = 16  # an idle indexer's claim: what a quiet minute brings
# After a claim that emptied the queue, how long an indexer lets the next deliveries gather
# before it claims again. Claimed one or two at a time, a steady 1,000 a second cost a worker
# 0.34 of a core and its PostgreSQL 0.79 (`bench drain --rate 1000`); gathered, 0.23 and 0.59,
# for 13 ms more lag at the median. A lone delivery still finds an indexer waiting (a worker
# runs several), and a backlog never waits: its claims come back full.
GATHER_SECONDS = 0.03


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a delivery that failed to process is tried again, and when we give up."""

    max_attempts: int = 8

    def delay(self, attempt: int) -> float:
        return PROCESSING_BACKOFF.delay(attempt)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    claimed: int
    processed: int
    quarantined: int
    retried: int


async def process_batch(
    pool: asyncpg.Pool,
    *,
    batch_size: int,
    lease_seconds: float,
    policy: RetryPolicy,
    metrics: Metrics,
) -> BatchOutcome:
    lease = uuid.uuid4()
    async with pool.acquire() as conn:
        claimed = await conn.fetch(Q.claim_deliveries, lease, lease_seconds, batch_size)
        if not claimed:
            return BatchOutcome(0, 0, 0, 0)
        batch = _Run(conn, lease)
        try:
            async with conn.transaction():
                # Committed without waiting for the WAL flush: all of it is rebuilt from the
                # deliveries, durable since ingest. Should PostgreSQL crash before the flush,
                # they are pending again once the (durable) claim's lease runs out, and indexing
                # them anew is idempotent; every consumer of what a batch queues claims with a
                # synchronous commit, which flushes this one first, before acting outside. Not
                # waiting also keeps the batch's NOTIFYs from holding PostgreSQL's one notify
                # lock through an fsync (db/announce.py), which serialised the indexers.
                await conn.execute(Q.commit_async)
                # Planned for each batch with the tables' sizes as they are now: a plan cached
                # while contacts or messages were nearly empty (a new deployment, a test) scans
                # them whole once they have grown, until autovacuum's next analyse.
                await conn.execute(Q.plan_each_batch)
                items = await batch.admit(claimed, policy)
                # Every contact the batch will write, locked first and in one global order: two
                # batches that share customers then queue instead of deadlocking.
                await conn.execute(Q.lock_contacts, sorted(_contact_keys(items)))
                await batch.index(items)
        except LeaseLost:
            # Claimed again by another worker meanwhile: it indexes them; nothing of ours
            # was committed.
            logger.warning("batch lease ran out", extra={"deliveries": len(claimed)})
            return BatchOutcome(len(claimed), 0, 0, 0)
        retried = await batch.settle_failures(policy)
    result = batch.result
    unknown = result.orphaned - result.refused_source
    metrics.inc("wa_events_orphaned_total", unknown, reason="unknown_number")
    metrics.inc("wa_events_orphaned_total", result.refused_source, reason="source_not_bound")
    metrics.inc("wa_deliveries_processed_total", batch.processed)
    metrics.inc("wa_deliveries_quarantined_total", batch.quarantined)
    metrics.inc("wa_deliveries_retried_total", retried)
    return BatchOutcome(len(claimed), batch.processed, batch.quarantined, retried)


@dataclass(slots=True)
class _Run:
    """One claimed batch on its way through: quarantined at once (unparseable, or its lease kept
    expiring), indexed together, or failed alone."""

    conn: asyncpg.Connection
    lease: uuid.UUID
    result: IndexResult = field(default_factory=IndexResult)
    processed: int = 0
    quarantined: int = 0
    failures: list[tuple[Item, int, BaseException]] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)

    async def admit(self, claimed: list[asyncpg.Record], policy: RetryPolicy) -> list[Item]:
        items: list[Item] = []
        for row in claimed:
            delivery_id = row["id"]
            self.attempts[delivery_id] = row["attempts"]
            given_up = lease_expired(row["attempts"], policy.max_attempts)
            if given_up is not None:
                await self._quarantine(delivery_id, "worker_died", given_up)
                continue
            source: str = row["source"]
            try:
                if source.startswith("websession:"):
                    delivery = parse_gateway_delivery(bytes(row["body"]), source.split(":", 1)[1])
                else:
                    delivery = parse_delivery(bytes(row["body"]))
            except InvalidDelivery as exc:
                await self._quarantine(delivery_id, exc.code, exc.message)
                logger.warning(
                    "delivery quarantined", extra={"delivery_id": delivery_id, "code": exc.code}
                )
                continue
            items.append(Item(delivery_id, row["source"], delivery))
        return items

    async def _quarantine(self, delivery_id: int, code: str, reason: str) -> None:
        await self.conn.execute(Q.quarantine_delivery, delivery_id, self.lease, code, reason)
        self.quarantined += 1

    async def index(self, items: list[Item]) -> None:
        """The items in one savepoint; when a statement fails, each half in its own, down to
        the one delivery that fails, which alone is retried (the rest commit)."""
        if not items:
            return
        try:
            async with self.conn.transaction():
                result = await index_batch(self.conn, items)
                ids = [item.delivery_id for item in items]
                status = await self.conn.execute(Q.finish_deliveries, ids, self.lease)
                if status != f"UPDATE {len(ids)}":
                    raise LeaseLost(f"the lease on {len(ids) - int(status.split()[1])} ran out")
        except (LeaseLost, asyncpg.PostgresConnectionError, OSError):
            raise  # the whole batch is lost with the lease or the connection
        except Exception as exc:
            if len(items) == 1:
                self.failures.append((items[0], self.attempts[items[0].delivery_id], exc))
                return
            middle = len(items) // 2
            await self.index(items[:middle])
            await self.index(items[middle:])
            return
        self.result.add(result)
        self.processed += len(items)

    async def settle_failures(self, policy: RetryPolicy) -> int:
        """Each delivery that failed alone: tried again later, or quarantined past its tries."""
        retried = 0
        for item, attempts, error in self.failures:
            reason = f"{type(error).__name__}: {error}"[:2000]
            extra = {"delivery_id": item.delivery_id, "attempts": attempts}
            if attempts >= policy.max_attempts:
                await self._quarantine(item.delivery_id, "processing_failed", reason)
                logger.error("delivery quarantined after retries", extra=extra)
            else:
                await self.conn.execute(
                    Q.retry_delivery, item.delivery_id, self.lease, policy.delay(attempts), reason
                )
                retried += 1
                logger.warning(
                    "delivery failed, will retry", extra={**extra, "error": type(error).__name__}
                )
        return retried


def _contact_keys(items: Iterable[Item]) -> set[str]:
    """The contacts indexing will write: senders, and recipients a 131047 closes."""
    keys: set[str] = set()
    for item in items:
        for event in item.delivery.events:
            number = event.route.phone_number_id
            if isinstance(event, InboundMessage):
                keys.add(f"{number}:{event.sender.wa_id or event.sender.user_id}")
            elif isinstance(event, EchoMessage):
                keys.add(f"{number}:{event.recipient.wa_id or event.recipient.user_id}")
            elif isinstance(event, StatusUpdate) and event.kind is StatusKind.FAILED:
                keys.add(f"{number}:{event.recipient_id or event.recipient_user_id}")
    return keys


class DeliveryIndexer:
    """The worker's consumer of stored deliveries: one batch per step (a worker runs several)."""

    channel = channels.DELIVERIES

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        *,
        batch_size: int,
        lease_seconds: float,
        poll_seconds: float,
        policy: RetryPolicy,
        index: int = 0,
    ) -> None:
        self.name = f"deliveries-{index}"
        self.poll_seconds = poll_seconds
        self.wake = asyncio.Event()
        self._pool = pool
        self._metrics = metrics
        # Adapts to the backlog: small when idle (a lone delivery is not held for company),
        # doubling while claims come back full, up to `batch_size`.
        self._max_batch = max(1, batch_size)
        self._batch_size = min(MIN_BATCH, self._max_batch)
        self._lease = lease_seconds
        self._policy = policy

    @classmethod
    def from_resources(cls, resources: Resources, *, index: int = 0) -> DeliveryIndexer:
        settings = resources.settings
        return cls(
            resources.pool,
            resources.metrics,
            batch_size=settings.worker_batch_size,
            lease_seconds=settings.worker_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
            policy=RetryPolicy(max_attempts=settings.worker_max_attempts),
            index=index,
        )

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # each batch is one transaction: nothing to drain

    async def step(self) -> float | None:
        outcome = await process_batch(
            self._pool,
            batch_size=self._batch_size,
            lease_seconds=self._lease,
            policy=self._policy,
            metrics=self._metrics,
        )
        if outcome.claimed >= self._batch_size:
            self._batch_size = min(self._max_batch, self._batch_size * 2)
            return None  # a backlog: claim the next batch at once
        if outcome.claimed < self._batch_size // 2:
            self._batch_size = max(min(MIN_BATCH, self._max_batch), self._batch_size // 2)
        if not outcome.claimed:
            return self.poll_seconds
        await asyncio.sleep(GATHER_SECONDS)
        return None
