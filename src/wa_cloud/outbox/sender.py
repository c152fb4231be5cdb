"""The sender: claim a number's due messages with their send slots, send each on time, record.

A claim is one short transaction: lock the number's pacing row (SKIP LOCKED), take up to a
second of its throughput in messages (`CLAIM_HORIZON_SECONDS`), apply the 24-hour window and
the pair rate, reserve send slots and commit. Each message is then marked dispatched
(group-committed) just before its request leaves, so a worker killed at any point leaves a row
that is either sent again (never dispatched) or reported `unknown` (dispatched, outcome not
recorded) — never lost, never blindly doubled. One number's backlog never holds another's:
claims go to the number whose next slot comes first, half a second before it is due
(`LOOKAHEAD_SECONDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import httpx

from wa_cloud.db import channels
from wa_cloud.db.groupcommit import GroupCommit
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q
from wa_cloud.errors import DatabaseUnavailable
from wa_cloud.graph.client import GraphClient
from wa_cloud.graph.errors import (
    GraphError,
    OutsideWindow,
    PairRateLimited,
    SendOutcomeUnknown,
    ThroughputExceeded,
)
from wa_cloud.graph.retry import MAX_SEND_ATTEMPTS, delay_for
from wa_cloud.metrics import Metrics
from wa_cloud.outbox.pacing import (
    BULK_LOOKAHEAD_SECONDS,
    LATE_SECONDS,
    LOOKAHEAD_SECONDS,
    batch_size,
    bulk_batch_size,
    pair_pace,
    reserve_slots,
)
from wa_cloud.providers.base import Provider
from wa_cloud.providers.numbers import number_provider
from wa_cloud.resources import Resources
from wa_cloud.secretbox import SecretBox
from wa_cloud.window import window_state
from wa_cloud.worker import InFlight, idle_wait

logger = logging.getLogger(__name__)

# What a number's own rows can cause (a value that breaks a statement), as opposed to the
# database's trouble (connections, timeouts, deadlocks), which ends the claim and flags nothing.
ROW_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
DRAIN_SECONDS = 10.0  # on stop: how long sends in flight may take to finish


def _about_the_number(exc: Exception) -> bool:
    if isinstance(exc, asyncpg.PostgresError):
        return isinstance(exc, ROW_ERRORS)
    return not isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError))


WINDOW_CLOSED_ERROR = {
    "code": 131047,
    "title": "Re-engagement message",
    "message": "More than 24 hours have passed since the customer last replied; checked before "
    "sending, so Meta was not asked.",
}


@dataclass(frozen=True, slots=True)
class Item:
    id: uuid.UUID
    body: Mapping[str, Any]
    kind: str
    used_fallback: bool
    attempts: int
    recipient: str
    contact_id: int | None
    due: float  # loop time at which to send


@dataclass(frozen=True, slots=True)
class Batch:
    phone_number_id: str
    provider: Provider
    items: list[Item]
    lease: uuid.UUID


@dataclass(frozen=True, slots=True)
class Accepted:
    """Meta took the message: its wamid and what was sent."""

    id: uuid.UUID
    lease: uuid.UUID
    wamid: str
    body: Mapping[str, Any]
    used_fallback: bool
    kind: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """A send that did not end accepted: failed, unknown, or queued again after `delay`."""

    id: uuid.UUID
    lease: uuid.UUID
    status: str
    errors: list[dict[str, Any]]
    reason: str
    delay: float = 0.0


async def record_outcomes(conn: asyncpg.Connection, rows: list[Outcome]) -> None:
    await conn.execute(
        Q.record_outcome,
        [r.id for r in rows],
        [r.status for r in rows],
        [json.dumps(r.errors) for r in rows],
        [r.reason for r in rows],
        [r.delay for r in rows],
        [r.lease for r in rows],
    )


class Sender:
    """The worker's consumer of the outbox: each step claims one number's due batch and starts
    sending it; sends run concurrently, paced by their claimed slots."""

    name = "sender"
    channel = channels.OUTBOX

    @classmethod
    def from_resources(cls, resources: Resources) -> Sender:
        settings = resources.settings
        return cls(
            resources.pool,
            resources.graph,
            resources.box,
            resources.metrics,
            http=resources.tenant_http,
            lease_seconds=settings.worker_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
        )

    def __init__(
        self,
        pool: asyncpg.Pool,
        graph: GraphClient,
        box: SecretBox,
        metrics: Metrics,
        *,
        http: httpx.AsyncClient | None = None,
        lease_seconds: float = 30.0,
        poll_seconds: float = 2.0,
        max_in_flight: int = 256,
    ) -> None:
        self._pool = pool
        self._graph = graph
        self._http = http  # the URL guard's client: web-session gateways are tenants' URLs
        self._box = box
        self._metrics = metrics
        self._lease = max(lease_seconds, 5.0)
        self.poll_seconds = poll_seconds
        self._in_flight = asyncio.Semaphore(max_in_flight)
        # Batches being sent: a finished one wakes nothing (the next claim is due by the clock).
        self._dispatches = InFlight(None, limit=2**31)
        self._next_recovery = 0.0
        self.wake = asyncio.Event()
        self._marks: GroupCommit[tuple[uuid.UUID, uuid.UUID]] = GroupCommit(
            "outbox-dispatch", self._write_marks
        )
        self._accepted: GroupCommit[Accepted] = GroupCommit("outbox-accepted", self._write_accepted)
        self._outcomes: GroupCommit[Outcome] = GroupCommit("outbox-outcomes", self._write_outcomes)

    # Writes (group-committed) ---------------------------------------------------------------
    async def _write_marks(self, marks: list[tuple[uuid.UUID, uuid.UUID]]) -> list[bool]:
        """Each (message, lease): True when marked, so it may leave; False: the lease is gone."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(Q.mark_dispatched, [m[0] for m in marks], [m[1] for m in marks])
        marked = {r["id"] for r in rows}
        return [m[0] in marked for m in marks]

    async def _write_accepted(self, rows: list[Accepted]) -> None:
        # A message id is the provider's word: one given twice (a web-session gateway is a
        # tenant's) is kept once, so it cannot fail the group's write for everyone else.
        seen: set[str] = set()
        wamids: list[str | None] = []
        for r in rows:
            wamids.append(None if r.wamid in seen else r.wamid)
            seen.add(r.wamid)
        async with self._pool.acquire() as conn:
            await conn.execute(
                Q.record_accepted,
                [r.id for r in rows],
                wamids,
                [dict(r.body) for r in rows],
                [r.used_fallback for r in rows],
                [r.kind for r in rows],
                [r.lease for r in rows],
            )

    async def _write_outcomes(self, rows: list[Outcome]) -> None:
        async with self._pool.acquire() as conn:
            await record_outcomes(conn, rows)

    # The consumer ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """The group committers `dispatch` writes through: open while the sender runs."""
        async with self._marks, self._accepted, self._outcomes:
            yield

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # Sends in flight finish (their outcomes written) before the committers close; the few
        # still waiting on Meta after that are recovered by their leases.
        async with self.writing(), self._dispatches.draining(DRAIN_SECONDS):
            yield

    async def step(self) -> float | None:
        if time.monotonic() >= self._next_recovery:
            await self.recover()
            self._next_recovery = time.monotonic() + self._lease / 3
        batch = await self.claim()
        if batch is False:
            return None  # a number was flagged and skipped: look for the next one
        if isinstance(batch, float):
            return batch
        if batch is not None:
            self._dispatches.start(self.dispatch(batch))
            return None
        return await self._next_wake()

    async def _next_wake(self) -> float:
        async with self._pool.acquire() as conn:
            seconds = await conn.fetchval(Q.outbox_next_wake, LOOKAHEAD_SECONDS)
        return idle_wait(self.poll_seconds, seconds)

    async def recover(self) -> None:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(Q.recover_expired_sends)
        for row in rows:
            logger.warning(
                "send lease expired", extra={"message_id": str(row["id"]), "now": row["status"]}
            )
            self._metrics.inc("wa_outbox_recovered_total", status=row["status"])

    async def claim(self) -> Batch | Literal[False] | float | None:
        """The next number's batch; None: nothing due; False: the number was flagged; seconds:
        only campaign messages are due, and not yet (`BULK_LOOKAHEAD_SECONDS`)."""
        claiming: list[str] = []
        try:
            return await self._claim_next(claiming)
        except Exception as exc:
            if not claiming or not _about_the_number(exc):
                raise  # the database's trouble, not the number's: the loop backs off
            # Something about this number's rows breaks the claim (its transaction rolled back):
            # the number is flagged so the claim goes on to the others instead of looping here.
            logger.exception("claim crashed", extra={"phone_number_id": claiming[0]})
            async with self._pool.acquire() as conn, conn.transaction():
                await self._flag(
                    conn, claiming[0], f"claiming its messages failed ({type(exc).__name__})"
                )
            return False

    async def _claim_next(self, claiming: list[str]) -> Batch | Literal[False] | float | None:
        lease = uuid.uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            # A claim needs no fsync of its own: no message leaves before its dispatch mark
            # commits synchronously, and that commit flushes the log through this one first.
            await conn.execute(Q.commit_async)
            number = await conn.fetchrow(Q.claim_number, LOOKAHEAD_SECONDS)
            if number is None:
                return None
            pnid = number["phone_number_id"]
            claiming.append(pnid)
            try:
                # Opened before anything is claimed: a token that does not open (a key missing
                # from this process, a corrupt row) must stop this number only.
                provider = number_provider(self._graph, self._http, self._box, dict(number))
            except Exception as exc:
                reason = f"the number's access token cannot be opened ({type(exc).__name__})"
                await self._flag(conn, pnid, reason)
                return False
            if number["flagged_at"] is not None:
                await conn.execute(Q.unflag_number, pnid)
            now: datetime = number["now"]
            loop_now = asyncio.get_running_loop().time()
            rate = float(number["throughput_mps"]) * float(number["factor"])
            size = batch_size(rate)
            rows = await conn.fetch(Q.claim_messages, pnid, size, lease, self._lease, 0)
            ahead: float = (number["next_slot"] - now).total_seconds()
            # Rows held behind an earlier one to their recipient take no slot: campaigns may
            # fill their room.
            taking = sum(r["held_until"] is None for r in rows)
            if taking < size:
                # A campaign's messages fill what conversations leave, a short horizon at a
                # time and close to their slots: a reply queued meanwhile waits for few
                # reserved slots.
                if ahead <= BULK_LOOKAHEAD_SECONDS:
                    bulk = min(size - taking, bulk_batch_size(rate))
                    rows += await conn.fetch(Q.claim_messages, pnid, bulk, lease, self._lease, 1)
                elif not rows:
                    return ahead - BULK_LOOKAHEAD_SECONDS
            held = [r for r in rows if r["held_until"] is not None]
            if held:
                # Behind an earlier message to the same recipient still on its way: back to the
                # queue until it is due, never sent before it.
                rows = [r for r in rows if r["held_until"] is None]
                await conn.execute(
                    Q.postpone_messages,
                    [r["id"] for r in held],
                    [r["held_until"] for r in held],
                    lease,
                )
                self._metrics.inc("wa_outbox_held_back_total", len(held))
            windows = {
                r["id"]: r
                for r in await conn.fetch(
                    Q.contact_windows, [r["contact_id"] for r in rows if r["contact_id"]]
                )
            }
            sendable: list[tuple[asyncpg.Record, Mapping[str, Any], bool]] = []
            refused: list[Outcome] = []
            for row in rows:
                body, fallback = row["request"], False
                if row["type"] != "template" and provider.capabilities.customer_service_window:
                    contact = windows.get(row["contact_id"])
                    state = window_state(
                        contact["last_inbound_at"] if contact else None,
                        contact["window_closed_at"] if contact else None,
                        now,
                    )
                    if not state.open:
                        if row["fallback_template"] is None:
                            refused.append(
                                Outcome(
                                    row["id"],
                                    lease,
                                    "failed",
                                    [WINDOW_CLOSED_ERROR],
                                    "outside_customer_service_window",
                                )
                            )
                            continue
                        body, fallback = row["fallback_template"], True
                sendable.append((row, body, fallback))

            pairs = await conn.fetch(
                Q.pair_state, pnid, sorted({r["recipient"] for r, _, _ in sendable})
            )
            decision = pair_pace(
                [r["recipient"] for r, _, _ in sendable],
                {p["recipient"]: p["tat"] for p in pairs},
                now,
            )
            if decision.tats:
                await conn.execute(
                    Q.save_pair_state, pnid, list(decision.tats), list(decision.tats.values())
                )
            if decision.postponed:
                await conn.execute(
                    Q.postpone_messages,
                    [sendable[i][0]["id"] for i, _ in decision.postponed],
                    [at for _, at in decision.postponed],
                    lease,
                )
            allowed = [sendable[i] for i in decision.allowed]
            slots, next_slot = reserve_slots(number["next_slot"], now, rate, len(allowed))
            await conn.execute(Q.reserve_slots, pnid, next_slot if allowed else number["next_slot"])
            if refused:
                await record_outcomes(conn, refused)
        if refused:
            self._metrics.inc("wa_outbox_failed_total", len(refused), reason="window_closed")
        items = [
            Item(
                id=row["id"],
                body=body,
                kind=str(body.get("type") or row["type"]),
                used_fallback=fallback,
                attempts=row["attempts"],
                recipient=row["recipient"],
                contact_id=row["contact_id"],
                due=loop_now + (slot - now).total_seconds(),
            )
            for (row, body, fallback), slot in zip(allowed, slots, strict=True)
        ]
        return Batch(pnid, provider, items, lease)

    async def _flag(self, conn: asyncpg.Connection, phone_number_id: str, reason: str) -> None:
        failed = await conn.fetch(Q.flag_number, phone_number_id, reason[:500])
        self._metrics.inc("wa_outbox_failed_total", len(failed), reason="number_unavailable")
        self._metrics.inc("wa_outbox_numbers_flagged_total")
        logger.error(
            "number flagged, its queued messages failed",
            extra={"phone_number_id": phone_number_id, "failed": len(failed), "reason": reason},
        )

    async def dispatch(self, batch: Batch) -> None:
        # One recipient's messages leave one after another in the order they were claimed (a
        # file and then its text, a long answer's parts): sent at once, a later one could reach
        # Meta first. Different recipients go at the same time.
        by_recipient: dict[str, list[Item]] = {}
        for item in batch.items:
            by_recipient.setdefault(item.recipient, []).append(item)
        results = await asyncio.gather(
            *(self._send_in_order(batch, items) for items in by_recipient.values())
        )
        crashed = [exc for found in results for exc in found]
        if crashed:
            # A bug for this number: it must not take the sender down for every other number.
            logger.error(
                "sending crashed",
                extra={"phone_number_id": batch.phone_number_id, "crashes": len(crashed)},
                exc_info=crashed[0],
            )
            self._metrics.inc("wa_outbox_send_crashes_total", len(crashed))

    async def _send_in_order(self, batch: Batch, items: list[Item]) -> list[Exception]:
        crashed: list[Exception] = []
        for i, item in enumerate(items):
            try:
                went = await self._send_one(batch, item)
            except Exception as exc:  # reported by dispatch
                crashed.append(exc)
                went = False
            if not went and items[i + 1 :]:
                # It went back to the queue (or may have): the ones after it wait for it.
                await self._hold_back(batch, items[i + 1 :])
                break
        return crashed

    async def _send_one(self, batch: Batch, item: Item) -> bool:
        """Send one message in its slot; False when it did not go and may be sent later (too
        late for its slot, its lease lost, the database away, Meta asking for a retry), so the
        next ones must wait."""
        loop = asyncio.get_running_loop()
        delay = item.due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        async with self._in_flight:
            if loop.time() - item.due > LATE_SECONDS:
                await self._requeue_late(batch, item, marked=False)
                return False
            try:
                marked = await self._marks.submit((item.id, batch.lease))
            except DatabaseUnavailable:
                return False  # not marked, so not sent: the lease runs out, it is queued again
            if not marked:
                # The lease ran out while this waited: the row may be another worker's now.
                self._metrics.inc("wa_outbox_lease_lost_total")
                return False
            if loop.time() - item.due > LATE_SECONDS:
                await self._requeue_late(batch, item, marked=True)  # the mark commit was slow
                return False
            try:
                wamid = await batch.provider.send(item.body)
            except GraphError as exc:
                return not await self._failed(batch, item, exc)
            self._metrics.inc("wa_outbox_accepted_total")
            with contextlib.suppress(DatabaseUnavailable):  # recovery reports it as unknown
                await self._accepted.submit(
                    Accepted(item.id, batch.lease, wamid, item.body, item.used_fallback, item.kind)
                )
            return True

    async def _hold_back(self, batch: Batch, items: list[Item]) -> None:
        """Back to the queue behind the message before them, unsent and uncounted: the claim
        that takes them again holds them behind it while it is on its way (claim_messages,
        `held_until`), so a retry's backoff keeps them waiting too."""
        self._metrics.inc("wa_outbox_held_back_total", len(items))
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self._pool.acquire() as conn:
                await conn.execute(
                    Q.postpone_messages,
                    [item.id for item in items],
                    [datetime.now(UTC)] * len(items),
                    batch.lease,
                )

    async def _requeue_late(self, batch: Batch, item: Item, *, marked: bool) -> None:
        """Too late for its slot: back to the queue (attempt not counted, a dispatch mark
        undone: it did not leave), never sent in a bunch that would exceed the number's
        throughput."""
        self._metrics.inc("wa_outbox_requeued_late_total")
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self._pool.acquire() as conn:
                if marked:
                    await conn.execute(Q.undo_dispatch, item.id, batch.lease)
                else:
                    await conn.execute(
                        Q.postpone_messages, [item.id], [datetime.now(UTC)], batch.lease
                    )

    async def _failed(self, batch: Batch, item: Item, exc: GraphError) -> bool:
        """Record what Meta refused; whether the message went back to the queue for a retry."""
        errors = [exc.as_dict()]
        reason = f"{type(exc).__name__}: {exc.message}"[:1000]
        if isinstance(exc, SendOutcomeUnknown):
            outcome = Outcome(item.id, batch.lease, "unknown", errors, reason)
        elif exc.retryable and item.attempts < MAX_SEND_ATTEMPTS:
            delay = delay_for(exc, item.attempts)
            outcome = Outcome(item.id, batch.lease, "queued", [], reason, delay)
        else:
            outcome = Outcome(item.id, batch.lease, "failed", errors, reason)
        self._metrics.inc("wa_outbox_errors_total", code=str(exc.code), outcome=outcome.status)
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self._pool.acquire() as conn:
                if isinstance(exc, ThroughputExceeded):
                    await conn.execute(Q.slow_number, batch.phone_number_id)
                elif isinstance(exc, PairRateLimited):
                    await conn.execute(
                        Q.penalise_pair, batch.phone_number_id, item.recipient, outcome.delay
                    )
                elif isinstance(exc, OutsideWindow) and item.contact_id is not None:
                    await conn.execute(Q.close_window_for, item.contact_id)
        with contextlib.suppress(DatabaseUnavailable):
            await self._outcomes.submit(outcome)
        if outcome.status != "queued":
            logger.warning(
                "send failed",
                extra={"message_id": str(item.id), "code": exc.code, "status": outcome.status},
            )
        return outcome.status == "queued"
