"""Retry policy as data, in one place: which errors are retried, how long to wait, how often.

The outbox uses `delay_for` to reschedule a send durably; short management calls (media,
templates, phone number reads) retry in-process with tenacity using the same numbers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from wa_cloud.backoff import Backoff
from wa_cloud.graph.errors import GraphError, PairRateLimited, ThroughputExceeded

T = TypeVar("T")


DEFAULT = Backoff(base=1.0, cap=300.0)
# Meta's pair limit is about one message per 6 s to a user: waiting less only earns more 131056.
BACKOFFS: dict[type[GraphError], Backoff] = {
    PairRateLimited: Backoff(base=30.0, cap=900.0),
    ThroughputExceeded: Backoff(base=0.5, cap=30.0),
}
MAX_SEND_ATTEMPTS = 8
MAX_CALL_ATTEMPTS = 4


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, GraphError) and exc.retryable


def delay_for(exc: GraphError, attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`; Meta's Retry-After wins when longer."""
    backoff = next((b for cls, b in BACKOFFS.items() if isinstance(exc, cls)), DEFAULT)
    return max(backoff.delay(attempt), exc.retry_after or 0.0)


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, GraphError):
        return min(delay_for(exc, state.attempt_number), 10.0)
    return 0.5


async def call_with_retries(call: Callable[[], Awaitable[T]]) -> T:
    """Run a management call, retrying only what Meta says is transient."""
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(MAX_CALL_ATTEMPTS),
        wait=_wait,
        retry=retry_if_exception(is_retryable),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # AsyncRetrying either returns or re-raises
