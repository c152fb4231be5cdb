"""The retention job: personal data has a lifetime.

One pass clears raw webhook bodies and deletes finished forwards and orphaned events older than
`WA_RAW_RETENTION_DAYS` (default 7: Meta retries a webhook for up to 7 days, so a body is
never needed after that), purges conversations past their number's assistant `retention_hours`
(default 24; 0 keeps them: the text, payload and downloaded media go, the message rows stay),
deletes downloaded media past its number's `media_retention_days` (default 90), and drops
pair-pacing rows that no longer pace anything.

Any worker may run it; one runs at a time. Work goes in batches of a few thousand rows, each
batch its own short transaction under `pg_try_advisory_xact_lock`: a batch never holds locks
long, a busy lock means another process is running a pass (this one stops), and the lock dies
with its transaction (pooled connections are not reset, so a session lock could leak).

The worker runs `Retention`, whose step is a pass, every `RETENTION_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, fields

import asyncpg

from wa_cloud.ai.config import DEFAULTS
from wa_cloud.config import Settings
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q

logger = logging.getLogger(__name__)

# Short enough that each pass has little to do (ten minutes of deliveries age out between two
# passes), long enough that an idle pass (a few index probes and a scan of pair_pacing) is noise.
RETENTION_INTERVAL_SECONDS = 600.0
BATCH_SIZE = 2000
# A pair's theoretical arrival time this far in the past paces nothing (and leaves room for
# clock differences between a worker and the database).
STALE_PAIR_SECONDS = 60.0
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one pass removed, per kind; `busy` when another process held the lock."""

    delivery_bodies: int = 0
    forwards: int = 0
    replies: int = 0  # finished reply jobs
    orphaned_events: int = 0
    messages: int = 0  # purged (text and media gone, the row kept)
    media: int = 0
    pair_pacing: int = 0
    tool_calls: int = 0  # the assistant's tool calls (their arguments are customers' words)
    follow_ups: int = 0  # finished follow-ups and reminders (their texts quote conversations)
    console_signouts: int = 0  # signed-out console sessions whose cookies have expired
    busy: bool = False

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "busy")


async def _batch(pool: asyncpg.Pool, query: str, *args: object) -> int | None:
    """One batch in its own transaction; None when another process holds the lock."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(Q.retention_lock):
            return None
        count: int = await conn.fetchval(query, *args)
        return count


async def _drain(
    pool: asyncpg.Pool, query: str, batch_size: int, *args: object
) -> tuple[int, bool]:
    """Run one batch statement until a batch comes back short: rows touched, and whether it
    stopped because another process took the lock."""
    total = 0
    while True:
        done = await _batch(pool, query, *args)
        if done is None:
            return total, True
        total += done
        if done < batch_size:
            return total, False


async def run_retention(
    pool: asyncpg.Pool, settings: Settings, *, batch_size: int = BATCH_SIZE
) -> RetentionReport:
    """One retention pass. Returns what it removed; stops early (`busy`) if another process is
    running one, keeping what it had done."""
    if settings.raw_retention_days < 0:
        raise ValueError("raw_retention_days must not be negative")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    raw_age = settings.raw_retention_days * SECONDS_PER_DAY
    counts: dict[str, int] = {}
    plan = (
        ("delivery_bodies", Q.purge_delivery_bodies, (raw_age, batch_size)),
        ("forwards", Q.delete_finished_forwards, (raw_age, batch_size)),
        ("replies", Q.delete_finished_replies, (raw_age, batch_size)),
        ("orphaned_events", Q.delete_orphaned_events, (raw_age, batch_size)),
        ("messages", Q.purge_conversations, (batch_size, DEFAULTS.retention_hours)),
        ("media", Q.delete_expired_media, (batch_size,)),
        ("pair_pacing", Q.delete_stale_pair_pacing, (STALE_PAIR_SECONDS, batch_size)),
        ("tool_calls", Q.delete_old_tool_calls, (raw_age, batch_size)),
        ("follow_ups", Q.delete_old_follow_ups, (raw_age, batch_size)),
        ("console_signouts", Q.delete_expired_signouts, (batch_size,)),
    )
    busy = False
    for kind, query, args in plan:
        counts[kind], busy = await _drain(pool, query, batch_size, *args)
        if busy:
            break
    report = RetentionReport(**counts, busy=busy)
    if report.total or busy:
        logger.info("retention pass", extra={**counts, "busy": busy})
    return report


class Retention:
    """The worker's consumer: a pass every interval (no channel: nothing is urgent)."""

    name = "retention"
    channel = None
    poll_seconds = RETENTION_INTERVAL_SECONDS

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self.wake = asyncio.Event()

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # a pass is batches of short transactions

    async def step(self) -> float:
        try:
            await run_retention(self._pool, self._settings)
        except DATABASE_ERRORS as exc:
            # Tried again next interval, not at the runtime's database backoff: a pass that
            # keeps timing out must not re-run a heavy delete every few seconds.
            logger.warning("retention pass failed", extra={"error": repr(exc)})
        return self.poll_seconds
