"""The 24-hour customer-service window: opened and refreshed by every inbound user message.

Inside it any message may be sent; outside it only templates. The business's own messages do
not refresh it. A 131047 from Meta closes it early (our clock and Meta's may disagree) until the
user writes again. The contact's `last_inbound_at` and `window_closed_at` are the whole state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class WindowState:
    open: bool
    expires_at: datetime | None


def window_state(
    last_inbound_at: datetime | None,
    closed_at: datetime | None = None,
    now: datetime | None = None,
) -> WindowState:
    if last_inbound_at is None or (closed_at is not None and closed_at >= last_inbound_at):
        return WindowState(open=False, expires_at=None)
    expires = last_inbound_at + WINDOW
    return WindowState(open=(now or datetime.now(UTC)) < expires, expires_at=expires)
