"""Stored deliveries into the index: claim a batch, process each in a savepoint, commit once.

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
from dataclasses import dataclass

import asyncpg

from wa_cloud.backoff import Backoff
from wa_cloud.db import channels
from wa_cloud.db.queries import Q
from wa_cloud.errors import WaCloudError
from wa_cloud.events import Delivery, InboundMessage, StatusKind, StatusUpdate
from wa_cloud.inbound.index import IndexResult, index_delivery
from wa_cloud.inbound.parse import InvalidDelivery, parse_delivery
from wa_cloud.metrics import Metrics
from wa_cloud.resources import Resources
from wa_cloud.worker import lease_expired

logger = logging.getLogger(__name__)


class LeaseLost(WaCloudError):
    """Our lease ran out and another worker may own the delivery now."""


PROCESSING_BACKOFF = Backoff(base=1.0, cap=600.0)


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
        processed = quarantined = 0
        failures: list[tuple[asyncpg.Record, BaseException]] = []
        parsed = {row["id"]: _parse(row) for row in claimed}
        async with conn.transaction():
            # Every contact the batch will write, locked first and in one global order: two
            # batches that share customers then queue instead of deadlocking (each used to lock
            # its contacts in delivery order, and a shuffled stream stalled every worker).
            await conn.execute(Q.lock_contacts, sorted(_contact_keys(parsed.values())))
            for row in claimed:
                delivery_id = row["id"]
                log = {"delivery_id": delivery_id, "source": row["source"]}
                given_up = lease_expired(row["attempts"], policy.max_attempts)
                if given_up is not None:
                    await conn.execute(
                        Q.quarantine_delivery, delivery_id, lease, "worker_died", given_up
                    )
                    quarantined += 1
                    continue
                try:
                    async with conn.transaction():
                        result = await _process_one(conn, row, lease, parsed[row["id"]])
                except InvalidDelivery as exc:
                    await conn.execute(
                        Q.quarantine_delivery, delivery_id, lease, exc.code, exc.message
                    )
                    logger.warning("delivery quarantined", extra={**log, "code": exc.code})
                    quarantined += 1
                except (asyncpg.PostgresConnectionError, OSError):
                    raise  # the whole batch is lost with the connection; leases expire
                except Exception as exc:
                    failures.append((row, exc))
                else:
                    processed += 1
                    unknown = result.orphaned - result.refused_source
                    metrics.inc("wa_events_orphaned_total", unknown, reason="unknown_number")
                    metrics.inc(
                        "wa_events_orphaned_total", result.refused_source, reason="source_not_bound"
                    )
                    logger.debug(
                        "delivery processed",
                        extra={**log, "messages": result.messages, "statuses": result.statuses},
                    )
        retried = 0
        for row, error in failures:
            reason = f"{type(error).__name__}: {error}"[:2000]
            if row["attempts"] >= policy.max_attempts:
                await conn.execute(
                    Q.quarantine_delivery, row["id"], lease, "processing_failed", reason
                )
                quarantined += 1
                logger.error(
                    "delivery quarantined after retries",
                    extra={"delivery_id": row["id"], "attempts": row["attempts"]},
                )
            else:
                await conn.execute(
                    Q.retry_delivery, row["id"], lease, policy.delay(row["attempts"]), reason
                )
                retried += 1
                logger.warning(
                    "delivery failed, will retry",
                    extra={
                        "delivery_id": row["id"],
                        "attempts": row["attempts"],
                        "error": type(error).__name__,
                    },
                )
    metrics.inc("wa_deliveries_processed_total", processed)
    metrics.inc("wa_deliveries_quarantined_total", quarantined)
    metrics.inc("wa_deliveries_retried_total", retried)
    return BatchOutcome(len(claimed), processed, quarantined, retried)


def _parse(row: asyncpg.Record) -> Delivery | InvalidDelivery:
    try:
        return parse_delivery(bytes(row["body"]))
    except InvalidDelivery as exc:
        return exc


def _contact_keys(deliveries: Iterable[Delivery | InvalidDelivery]) -> set[str]:
    """The contacts indexing will write: senders, and recipients a 131047 closes."""
    keys: set[str] = set()
    for delivery in deliveries:
        if isinstance(delivery, InvalidDelivery):
            continue
        for event in delivery.events:
            number = event.route.phone_number_id
            if isinstance(event, InboundMessage):
                keys.add(f"{number}:{event.sender.wa_id or event.sender.user_id}")
            elif isinstance(event, StatusUpdate) and event.kind is StatusKind.FAILED:
                keys.add(f"{number}:{event.recipient_id or event.recipient_user_id}")
    return keys


async def _process_one(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    lease: uuid.UUID,
    delivery: Delivery | InvalidDelivery,
) -> IndexResult:
    if isinstance(delivery, InvalidDelivery):
        raise delivery
    result = await index_delivery(conn, delivery, row["id"], row["source"])
    status = await conn.execute(Q.finish_delivery, row["id"], lease, "processed")
    if status != "UPDATE 1":
        raise LeaseLost(f"lease on delivery {row['id']} ran out")
    return result


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
        self._batch_size = batch_size
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
        return None if outcome.claimed else self.poll_seconds  # claimed some: maybe more
