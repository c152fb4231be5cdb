"""The forwarder: POST queued events to each tenant's own webhook, signed, with retries.

`Forwarder` claims due `forwards` rows with `FOR UPDATE SKIP LOCKED` and a lease and POSTs
`{"id", "event", "created_at", "data"}` signed with the tenant's secret:
`X-WA-Cloud-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, with the
timestamp in `X-WA-Cloud-Timestamp` and the row's id in `X-WA-Cloud-Delivery` (the same on every
attempt, so the receiver can drop repeats). A 2xx is delivered; network errors, timeouts, 5xx,
408 and 429 are retried with backoff (Retry-After honoured); any other answer fails at once.
Every give-up is an audit row the tenant can read. What is queued, and how: `events.py`.

The tenant's URL goes through the URL guard at every delivery (its client connects only to
checked public addresses). Slots are fair: at most `max_per_tenant` POSTs of one tenant are in
flight in this process and claims skip a tenant at its bound, so one tenant's hanging endpoint
delays only its own events. A deactivated tenant's forwards are not claimed (see the query).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import asyncpg
import httpx

from wa_cloud.backoff import Backoff, retry_after
from wa_cloud.db import channels
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q
from wa_cloud.metrics import Metrics
from wa_cloud.resources import Resources
from wa_cloud.secretbox import SecretBox, SecretUnreadable
from wa_cloud.tenants import audit
from wa_cloud.tenants.sealed import WEBHOOK_SECRET
from wa_cloud.urlguard import GuardedClient, UrlNotAllowed
from wa_cloud.worker import InFlight, idle_wait, lease_expired

__all__ = ["Forwarder", "signature", "verify"]

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-WA-Cloud-Signature"
TIMESTAMP_HEADER: Final = "X-WA-Cloud-Timestamp"
DELIVERY_HEADER: Final = "X-WA-Cloud-Delivery"
EVENT_HEADER: Final = "X-WA-Cloud-Event"
TIMEOUT_SECONDS: Final = 10.0
DRAIN_SECONDS: Final = 5.0  # on stop: POSTs in flight may finish this long
RETRY_CAP_SECONDS: Final = 3600.0
# Answers that say "try again later"; every other non-2xx will be the same next time.
RETRYABLE_STATUSES: Final = frozenset({408, 429})
MAX_IN_FLIGHT: Final = 32
# One tenant's share of the slots: its endpoint hanging for the whole timeout holds only these.
MAX_IN_FLIGHT_PER_TENANT: Final = 4
ERROR_EXCERPT_BYTES: Final = 300
ACTOR: Final = "system:forwarder"


# --- sign ------------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-WA-Cloud-Signature` value: HMAC-SHA256 over `<timestamp>.<body>`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (and our tests do): constant-time compare."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def request_body(row: Mapping[str, Any]) -> bytes:
    document = {
        "id": str(row["id"]),
        "event": row["event"],
        "created_at": row["created_at"].isoformat(),
        "data": row["payload"],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


# --- send ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST came to: the status (None: no answer) and a readable reason."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE_STATUSES or self.status >= 500


def _clean(text: str) -> str:
    return text.replace("\x00", "")[:1000]  # PostgreSQL text cannot hold NUL


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer's body, never more (the tenant's server may send anything)."""
    taken = b""
    async for chunk in response.aiter_raw():
        taken += chunk
        if len(taken) >= ERROR_EXCERPT_BYTES:
            break
    return _clean(taken[:ERROR_EXCERPT_BYTES].decode("utf-8", "replace").strip())


async def post_event(
    http: GuardedClient, url: str, secret: str, delivery_id: str, event: str, body: bytes
) -> Answer:
    timestamp = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "user-agent": "wa-cloud-forwarder/1",
        "accept-encoding": "identity",  # the error excerpt is read raw, never decompressed
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: event,
    }
    try:
        # httpx's timeout is per read; this one bounds the whole exchange.
        async with (
            asyncio.timeout(TIMEOUT_SECONDS),
            http.stream(
                "POST",
                url,
                content=body,
                headers=headers,
                timeout=httpx.Timeout(TIMEOUT_SECONDS, connect=5.0),
                follow_redirects=False,
            ) as response,
        ):
            excerpt = await _excerpt(response)
    except UrlNotAllowed as exc:
        # Nothing was sent. Retried with backoff like a network error: the name may resolve to
        # a public address again (a DNS change, or the tenant sets a new URL, which the next
        # claim reads), and a URL that stays refused gives up after the usual attempts.
        return Answer(None, f"url_not_allowed: {exc.reason}")
    except TimeoutError:
        return Answer(None, f"no answer within {TIMEOUT_SECONDS:g} s")
    except httpx.TimeoutException as exc:
        return Answer(None, f"timed out ({type(exc).__name__})")
    except (httpx.HTTPError, OSError) as exc:
        return Answer(None, _clean(f"{type(exc).__name__}: {exc}"))
    status = response.status_code
    if 200 <= status < 300:
        return Answer(status)
    reason = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
    if 300 <= status < 400:
        reason = f"HTTP {status}: redirects are not followed; set the final URL"
    return Answer(status, reason, retry_after(response.headers.get("retry-after")))


class Forwarder:
    """The worker's consumer of forwards: each step claims what fits in its free slots (a
    tenant at its share is skipped) and starts those POSTs to tenants' webhooks."""

    name = "forwarder"
    channel = channels.FORWARDS

    @classmethod
    def from_resources(cls, resources: Resources) -> Forwarder:
        settings = resources.settings
        return cls(
            resources.pool,
            resources.box,
            resources.metrics,
            http=resources.tenant_http,
            backoff=Backoff(base=settings.forward_retry_base_seconds, cap=RETRY_CAP_SECONDS),
            max_attempts=settings.forward_max_attempts,
            lease_seconds=settings.worker_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
        )

    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        metrics: Metrics,
        *,
        http: GuardedClient,
        backoff: Backoff,
        max_attempts: int,
        lease_seconds: float = 30.0,
        poll_seconds: float = 2.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_per_tenant: int = MAX_IN_FLIGHT_PER_TENANT,
    ) -> None:
        """`http`: the process's guarded client for tenants' URLs."""
        self._pool = pool
        self._box = box
        self._metrics = metrics
        self._http = http
        self._backoff = backoff
        self._max_attempts = max(1, max_attempts)
        # A POST may take the whole timeout: the lease must outlast it, or a row in flight
        # would be claimed again and sent twice.
        self._lease = max(lease_seconds, TIMEOUT_SECONDS + 20.0)
        self.poll_seconds = poll_seconds
        self.wake = asyncio.Event()
        # POSTs in flight here, with their tenant: what the claim query is told, to skip the full.
        self._posts = InFlight(self.wake, max_in_flight, max_per_tenant)

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._posts.draining(DRAIN_SECONDS)  # the rest are retried after their lease

    async def step(self) -> float | None:
        free = self._posts.free
        if free <= 0:
            return self.poll_seconds  # a finishing POST wakes us
        if await self._claim(free):
            return None  # there may be more
        return await self._next_wake()

    async def _next_wake(self) -> float:
        async with self._pool.acquire() as conn:
            seconds = await conn.fetchval(Q.forward_next_due, self._posts.full_tenants())
        return idle_wait(self.poll_seconds, seconds, floor=0.02)

    async def _claim(self, limit: int) -> int:
        lease = uuid.uuid4()
        busy = list(self._posts.busy().items())
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                Q.claim_forwards,
                limit,
                lease,
                self._lease,
                self._posts.per_tenant,
                [tenant for tenant, _ in busy],
                [count for _, count in busy],
            )
        for row in rows:
            self._posts.start(self._deliver(self._http, row, lease), row["tenant_id"])
        return len(rows)

    async def _deliver(self, http: GuardedClient, row: asyncpg.Record, lease: UUID) -> None:
        extra = {
            "delivery_id": str(row["id"]),
            "tenant_id": str(row["tenant_id"]),
            "event": row["event"],
            "attempt": row["attempts"],
        }
        try:
            if row["url"] is None or row["secret_enc"] is None:
                await self._give_up(row, lease, Answer(None, "the tenant has no webhook"), extra)
                return
            given_up = lease_expired(row["attempts"], self._max_attempts)
            if given_up is not None:
                await self._give_up(row, lease, Answer(None, given_up), extra)
                return
            try:
                secret = self._box.open(
                    bytes(row["secret_enc"]), context=WEBHOOK_SECRET.context(str(row["tenant_id"]))
                )
            except SecretUnreadable:
                # Ours to fix (a master key missing from this process): keep it, retry later.
                logger.error("webhook secret unreadable", extra=extra)
                answer = Answer(None, "the signing secret cannot be opened by this worker")
            else:
                answer = await post_event(
                    http, row["url"], secret, str(row["id"]), row["event"], request_body(row)
                )
            await self._settle(row, lease, answer, extra)
        except DATABASE_ERRORS as exc:
            # Not recorded: the lease runs out and the row is claimed again.
            logger.warning("forward outcome not recorded", extra={**extra, "error": repr(exc)})
        except Exception:  # a bug must not stop the loop; the lease brings the row back
            logger.exception("forward crashed", extra=extra)

    async def _settle(
        self, row: asyncpg.Record, lease: UUID, answer: Answer, extra: dict[str, Any]
    ) -> None:
        attempts = int(row["attempts"])
        if answer.delivered:
            async with self._pool.acquire() as conn:
                await conn.fetchval(Q.forward_delivered, row["id"], lease, answer.status)
            self._metrics.inc("wa_forwards_delivered_total", event=row["event"])
            logger.info("event forwarded", extra={**extra, "status": answer.status})
            return
        if answer.retryable and attempts < self._max_attempts:
            delay = self._backoff.delay(attempts)
            if answer.retry_after is not None:
                delay = max(delay, min(answer.retry_after, RETRY_CAP_SECONDS))
            async with self._pool.acquire() as conn:
                await conn.fetchval(
                    Q.forward_retry, row["id"], lease, answer.status, answer.error, delay
                )
            reason = "network" if answer.status is None else str(answer.status)
            self._metrics.inc("wa_forwards_retried_total", reason=reason)
            logger.info(
                "forward will be retried",
                extra={**extra, "status": answer.status, "delay": round(delay, 3)},
            )
            return
        if answer.retryable:
            answer = Answer(answer.status, f"gave up after {attempts} attempts: {answer.error}")
        await self._give_up(row, lease, answer, extra)

    async def _give_up(
        self, row: asyncpg.Record, lease: UUID, answer: Answer, extra: dict[str, Any]
    ) -> None:
        error = _clean(answer.error or "failed")
        async with self._pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(Q.forward_failed, row["id"], lease, answer.status, error)
            if done is None:
                return  # another worker holds the row now
            await audit.record(
                conn,
                "webhook.delivery_failed",
                tenant_id=row["tenant_id"],
                actor=ACTOR,
                # Deleted while the event waited: expected, unlike an endpoint that refuses.
                severity="warning" if row["url"] is None else "error",
                detail={
                    "delivery_id": str(row["id"]),
                    "event": row["event"],
                    "attempts": int(row["attempts"]),
                    "status": answer.status,
                    "error": error,
                },
            )
        reason = "refused" if answer.status is not None and not answer.retryable else "gave_up"
        if row["url"] is None:
            reason = "no_webhook"
        self._metrics.inc("wa_forwards_failed_total", reason=reason)
        logger.warning("forward failed", extra={**extra, "status": answer.status})
