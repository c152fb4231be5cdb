"""The 24-hour customer-service window: opened and refreshed by every inbound user message.

Inside it any message may be sent; outside it only templates. The business's own messages do
not refresh it. The contact's `last_inbound_at` is the single source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class WindowState:
    open: bool
    expires_at: datetime | None


def window_state(last_inbound_at: datetime | None, now: datetime | None = None) -> WindowState:
    if last_inbound_at is None:
        return WindowState(open=False, expires_at=None)
    expires = last_inbound_at + WINDOW
    return WindowState(open=(now or datetime.now(UTC)) < expires, expires_at=expires)
