"""Per-API-key request rate: a GCRA bucket per key, in this process.

One tenant's script in a loop must not take every web process's connections and CPU from the
others. Each process enforces the rate on its own (no shared state to ask per request): with N
web processes a key may reach N times the rate in the worst case, which still bounds it.
"""

from __future__ import annotations

import time
from typing import Final

# Keys not seen for this long are forgotten when the table is pruned.
_PRUNE_EVERY: Final = 10_000


class KeyRateLimiter:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        self._interval = 1.0 / max(rate_per_second, 1e-9)
        self._tolerance = self._interval * max(burst - 1, 0)
        self._tat: dict[bytes, float] = {}  # key hash -> theoretical arrival time
        self._seen = 0

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
