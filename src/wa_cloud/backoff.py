"""Exponential backoff with full jitter, as data: every retry in the service waits this way;
and the one reader of `Retry-After`."""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # jitter: retries do not march in step


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now (delay-seconds or an HTTP date); None when absent or
    unreadable. Never raises: the header comes from servers we do not control."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None  # an HTTP date is always GMT; a date without a zone is not one
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), 86_400.0)  # a day at most: a typo must not park us forever
