"""Per-API-key request rate (a GCRA bucket per key) and per-tenant concurrency, in this process.

One tenant's script in a loop must not take every web process's connections and CPU from the
others. Each process enforces the rate on its own (no shared state to ask per request): with N
web processes a key may reach N times the rate in the worst case, which still bounds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Final
from uuid import UUID

from wa_cloud.errors import RateLimited

# Keys not seen for this long are forgotten when the table is pruned.
_PRUNE_EVERY: Final = 10_000


class KeyRateLimiter:
    """A GCRA bucket per key: `rate` units a second, `burst` above it. A unit is a request, or
    (with `cost`) a byte of some costly work anyone can ask for without a secret: big webhook
    bodies, the escaped-unicode check of one whose signature failed. Past it, refused, not
    queued."""

    def __init__(self, rate_per_second: float, burst: float) -> None:
        self._interval = 1.0 / max(rate_per_second, 1e-9)
        self._tolerance = self._interval * max(burst - 1, 0)
        self._tat: dict[bytes, float] = {}  # key hash -> theoretical arrival time
        self._seen = 0

    def waiting(self, key: bytes, now: float | None = None, cost: float = 1.0) -> float | None:
        """What `take` would answer, without taking anything."""
        now = time.monotonic() if now is None else now
        late = max(self._tat.get(key, now), now) + self._interval * (cost - 1) - now
        return late - self._tolerance if late > self._tolerance else None

    def take(self, key: bytes, now: float | None = None, cost: float = 1.0) -> float | None:
        """Admit `cost` units for `key`: None, or the seconds to wait before they would be."""
        now = time.monotonic() if now is None else now
        wait = self.waiting(key, now, cost)
        if wait is not None:
            return wait
        self._tat[key] = max(self._tat.get(key, now), now) + self._interval * cost
        self._seen += 1
        if self._seen % _PRUNE_EVERY == 0:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        return None


class TenantSlots:
    """At most `limit` of one kind of heavy request (uploads: a body of up to 100 MB, a URL
    fetch, an ffmpeg run, a Graph upload) in flight per tenant; more is a 429 at once, before
    the body is read, instead of a queue that holds memory and the tenant's neighbours' CPU."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._busy: dict[UUID, int] = {}

    @contextlib.contextmanager
    def hold(self, tenant_id: UUID) -> Iterator[None]:
        if self._busy.get(tenant_id, 0) >= self._limit:
            raise RateLimited(1.0)
        self._busy[tenant_id] = self._busy.get(tenant_id, 0) + 1
        try:
            yield
        finally:
            self._busy[tenant_id] -= 1
            if not self._busy[tenant_id]:
                del self._busy[tenant_id]


class FailedLookups:
    """Lookups that found nothing (guessed API keys, made-up app ids), counted per kind.

    Past the rate, uncached lookups of that kind go one at a time: guessing costs the database
    one query in flight, and a real key or app, whose lookup looks the same until it is
    answered, waits its turn instead of being refused (a refusal would let anyone lock every
    tenant out by guessing)."""

    def __init__(self, per_second: float, burst: int) -> None:
        self._failures = KeyRateLimiter(per_second, burst)
        self._turns: dict[bytes, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def turn(self, kind: bytes) -> AsyncIterator[None]:
        if self._failures.waiting(kind) is None:
            yield
            return
        async with self._turns.setdefault(kind, asyncio.Lock()):
            yield

    def failed(self, kind: bytes) -> None:
        self._failures.take(kind)
