"""Meta's pacing and window rules as small pure objects: a GCRA limiter, the 24-hour window
test, and the per-message pricing a status carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WINDOW_SECONDS = 24 * 3600
# Float noise must not turn the last conforming message of a burst into a refusal.
_EPSILON = 1e-9


@dataclass(slots=True)
class Gcra:
    """Generic cell rate algorithm: one message per `interval` on average, `burst` at once.

    Equivalent to a token bucket of `burst` tokens refilled one per `interval`, kept as a
    single number (the theoretical arrival time), so a limiter per (number, user) pair costs
    a few bytes. Chosen over a sliding one-second window because it refuses on the average
    rate while tolerating the jitter of a correctly paced client.
    """

    interval: float
    burst: int
    tat: float = 0.0

    def allows(self, now: float) -> bool:
        return max(self.tat, now) - now <= (self.burst - 1) * self.interval + _EPSILON

    def take(self, now: float) -> None:
        self.tat = max(self.tat, now) + self.interval


def throughput_limiter(mps: int) -> Gcra:
    """`mps` messages per second, with up to one second's worth sent at once."""
    return Gcra(interval=1.0 / mps, burst=mps)


def window_open(last_inbound_at: float | None, now: float) -> bool:
    return last_inbound_at is not None and now - last_inbound_at < WINDOW_SECONDS


def pricing(template_category: str | None, in_window: bool) -> dict[str, Any]:
    """Per-message pricing (PMP, since July 2025): service replies and utility templates inside
    the customer service window are free; marketing and authentication are always charged."""
    if template_category is None:
        return {
            "billable": False,
            "pricing_model": "PMP",
            "category": "service",
            "type": "free_customer_service",
        }
    category = template_category.lower()
    free = category == "utility" and in_window
    return {
        "billable": not free,
        "pricing_model": "PMP",
        "category": category,
        "type": "free_customer_service" if free else "regular",
    }
