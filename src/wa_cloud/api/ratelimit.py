"""Per-API-key request rate (a GCRA bucket per key) and per-tenant concurrency, in this process.

One tenant's script in a loop must not take every web process's connections and CPU from the
others. Each process enforces the rate on its own (no shared state to ask per request): with N
web processes a key may reach N times the rate in the worst case, which still bounds it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Final
from uuid import UUID

from wa_cloud.errors import RateLimited

# Keys not seen for this long are forgotten when the table is pruned.
_PRUNE_EVERY: Final = 10_000


class KeyRateLimiter:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        self._interval = 1.0 / max(rate_per_second, 1e-9)
        self._tolerance = self._interval * max(burst - 1, 0)
        self._tat: dict[bytes, float] = {}  # key hash -> theoretical arrival time
        self._seen = 0

    def waiting(self, key: bytes, now: float | None = None) -> float | None:
        """What `take` would answer, without taking anything."""
        now = time.monotonic() if now is None else now
        tat = max(self._tat.get(key, now), now)
        return tat - now - self._tolerance if tat - now > self._tolerance else None

    def take(self, key: bytes, now: float | None = None) -> float | None:
        """Admit one request for `key`: None, or the seconds to wait before one is allowed."""
        now = time.monotonic() if now is None else now
        tat = max(self._tat.get(key, now), now)
        if tat - now > self._tolerance:
            return tat - now - self._tolerance
        self._tat[key] = tat + self._interval
        self._seen += 1
        if self._seen % _PRUNE_EVERY == 0:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        return None


class ByteBudget:
    """Bytes of some costly work a second, with a burst (a token bucket): past it, the work is
    refused instead of queued. For what anyone can ask for without a secret: big webhook
    bodies, and the escaped-unicode check of one whose signature failed."""

    def __init__(self, bytes_per_second: float, burst: float) -> None:
        self._rate = bytes_per_second
        self._burst = burst
        self._level = burst
        self._at = time.monotonic()

    def spend(self, size: int) -> bool:
        now = time.monotonic()
        self._level = min(self._burst, self._level + (now - self._at) * self._rate)
        self._at = now
        if size > self._level:
            return False
        self._level -= size
        return True


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
