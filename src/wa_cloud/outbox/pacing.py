"""Meta's pace, computed before Meta enforces it.

Per number: virtual scheduling at the number's throughput. A claim reserves consecutive send
slots `1 / rate` apart starting at the number's `next_slot` and moves `next_slot` past them, in
PostgreSQL under the pacing row's lock, so every worker shares one schedule per number.

Per (number, recipient): Meta's pair rate, about one message per 6 s sustained with short
bursts tolerated, as a GCRA (generic cell rate algorithm): each recipient has a theoretical
arrival time `tat`; a message may go when `tat - now <= tolerance`, and then `tat += interval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

PAIR_INTERVAL = timedelta(seconds=6)
PAIR_BURST = 10  # messages a quiet recipient may get back to back before the 6 s pace applies
PAIR_TOLERANCE = PAIR_INTERVAL * (PAIR_BURST - 1)
CLAIM_HORIZON_SECONDS = 1.0  # how far ahead one claim reserves a number's slots
BULK_HORIZON_SECONDS = 0.25  # ... for campaign messages: a reply never waits behind many
LOOKAHEAD_SECONDS = 0.5  # claim a number this long before its next slot is due
# ... but its campaign messages only this long before: the slots a reply waits behind are the
# few already claimed plus this, not the whole lookahead filled with a campaign's messages.
BULK_LOOKAHEAD_SECONDS = 0.2
# A message this late for its slot (an overloaded worker) goes back to the queue instead of
# bunching up with on-time sends and earning a 130429.
LATE_SECONDS = 0.5


def batch_size(rate: float) -> int:
    return max(1, int(rate * CLAIM_HORIZON_SECONDS))


def bulk_batch_size(rate: float) -> int:
    return max(1, int(rate * BULK_HORIZON_SECONDS))


def reserve_slots(
    next_slot: datetime, now: datetime, rate: float, count: int
) -> tuple[list[datetime], datetime]:
    """Send times for `count` messages at `rate` per second, and the number's new next slot."""
    start = max(next_slot, now)
    step = timedelta(seconds=1 / rate)
    return [start + step * i for i in range(count)], start + step * count


@dataclass(frozen=True, slots=True)
class PairDecision:
    allowed: list[int]  # indexes of messages that may be sent now
    postponed: list[tuple[int, datetime]]  # index and the earliest time it may go
    tats: dict[str, datetime]  # new theoretical arrival time per recipient


def pair_pace(recipients: Sequence[str], tats: dict[str, datetime], now: datetime) -> PairDecision:
    """GCRA over the recipients of one claim, in order."""
    state = dict(tats)
    allowed: list[int] = []
    postponed: list[tuple[int, datetime]] = []
    for index, recipient in enumerate(recipients):
        tat = max(state.get(recipient, now), now)
        if tat - now > PAIR_TOLERANCE:
            postponed.append((index, tat - PAIR_TOLERANCE))
            continue
        state[recipient] = tat + PAIR_INTERVAL
        allowed.append(index)
    changed = {r: t for r, t in state.items() if tats.get(r) != t}
    return PairDecision(allowed, postponed, changed)
