"""Exponential backoff with full jitter, as data: every retry in the service waits this way."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # jitter: retries do not march in step
