"""Inbound media kept past Meta's 30 days: queued by the indexer, downloaded by the worker.

The indexer queues a `media` row in the transaction that stores the message. `MediaFetcher`
claims due rows with `FOR UPDATE SKIP LOCKED` and a lease, asks the number's provider for the
file (Meta's URL lives 5 minutes, so it is fetched right before the download), checks it against
the webhook's SHA-256 and stores the bytes. Transient failures come back later with backoff;
a permanent one, or too many attempts, ends the row `failed` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import asyncpg

from wa_cloud.db import channels
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q
from wa_cloud.errors import WaCloudError
from wa_cloud.events import InboundMessage
from wa_cloud.graph.errors import GraphError
from wa_cloud.graph.retry import DEFAULT, delay_for
from wa_cloud.media.rules import MAX_MEDIA_BYTES, MEDIA_KINDS, sha256_matches
from wa_cloud.providers.base import MediaFile, ProviderFor
from wa_cloud.providers.cloud import is_media_id
from wa_cloud.providers.numbers import number_providers
from wa_cloud.resources import Resources
from wa_cloud.worker import InFlight, lease_expired

logger = logging.getLogger(__name__)

# Users' files are not bound by Meta's upload table; the largest Meta serves is a document.
INBOUND_MAX_BYTES: Final = MAX_MEDIA_BYTES
# Downloads in flight in one worker, and for one tenant among them: a tenant whose files are
# slow or huge holds at most its own share.
MAX_IN_FLIGHT: Final = 8
MAX_PER_TENANT: Final = 2
# A download (URL lookup, up to 100 MB, in-process retries) must finish inside its lease.
MIN_LEASE_SECONDS: Final = 120.0


def _text(value: Any, limit: int = 255) -> str | None:
    # Webhook strings go into text columns: PostgreSQL refuses NUL, and nothing here is long.
    if isinstance(value, str) and value and "\x00" not in value and len(value) <= limit:
        return value
    return None


REFUSED_MEDIA_ID: Final = "refused: the media id is not one of Meta's (digits); nothing was fetched"


@dataclass(frozen=True, slots=True)
class MediaJob:
    """A `media` row for a newly stored message: a download to queue, or (`refused`) a media id
    that cannot be Meta's, recorded as failed so nothing is ever fetched for it."""

    tenant_id: UUID
    phone_number_id: str
    media_id: str
    message_id: UUID
    mime_type: str | None
    sha256: str | None
    refused: bool


def media_job(
    tenant_id: UUID, message: InboundMessage, message_id: UUID, *, web_session: bool = False
) -> MediaJob | None:
    """The download the message's media needs, if it has one (a web session's media is named
    by its message's id, and fetched from its own gateway only)."""
    body = message.raw.get(message.type)
    if message.type not in MEDIA_KINDS or not isinstance(body, Mapping):
        return None
    media_id = _text(body.get("id"))
    if media_id is None or message.route.phone_number_id is None:
        return None
    return MediaJob(
        tenant_id,
        message.route.phone_number_id,
        media_id,
        message_id,
        _text(body.get("mime_type")),
        _text(body.get("sha256")),
        refused=not web_session and not is_media_id(media_id),
    )


async def queue_media_jobs(conn: asyncpg.Connection, jobs: Sequence[MediaJob]) -> None:
    """On the caller's connection, in its transaction: the downloads in one statement (one
    wake-up for the fetchers), the refused ids in another."""
    for refused, query in ((False, Q.queue_inbound_media), (True, Q.refuse_inbound_media)):
        rows = [j for j in jobs if j.refused is refused]
        if rows:
            await conn.execute(
                query,
                [j.tenant_id for j in rows],
                [j.phone_number_id for j in rows],
                [j.media_id for j in rows],
                [j.message_id for j in rows],
                [j.mime_type for j in rows],
                [REFUSED_MEDIA_ID if refused else j.sha256 for j in rows],
            )


class MediaRefused(WaCloudError):
    """A download that will fail the same way every time (no number, wrong bytes)."""


class MediaFetcher:
    """The worker's consumer of inbound media: each step claims what fits in its free slots
    (a tenant at its share is skipped) and starts those downloads."""

    name = "media"
    channel = channels.MEDIA

    @classmethod
    def from_resources(cls, resources: Resources) -> MediaFetcher:
        settings = resources.settings
        return cls(
            resources.pool,
            number_providers(resources.graph, resources.tenant_http, resources.box),
            max_attempts=settings.worker_max_attempts,
            lease_seconds=settings.worker_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
        )

    def __init__(
        self,
        pool: asyncpg.Pool,
        provider_for: ProviderFor,
        *,
        max_attempts: int,
        lease_seconds: float = MIN_LEASE_SECONDS,
        poll_seconds: float = 2.0,
    ) -> None:
        self._pool = pool
        self._provider_for = provider_for
        self._max_attempts = max(1, max_attempts)
        self._lease = max(lease_seconds, MIN_LEASE_SECONDS)
        self.poll_seconds = poll_seconds
        self.wake = asyncio.Event()
        self._downloads = InFlight(self.wake, MAX_IN_FLIGHT, MAX_PER_TENANT)

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        # A download can take minutes: abandoned when the worker stops, claimed again when its
        # lease runs out.
        return self._downloads.draining(0)

    async def step(self) -> float | None:
        free = self._downloads.free
        if free and self._start(await self._claim(free)):
            return None  # there may be more
        return self.poll_seconds

    def _start(self, rows: list[asyncpg.Record]) -> int:
        for row in rows:
            self._downloads.start(self._fetch(row), row["tenant_id"])
        return len(rows)

    async def _claim(self, limit: int) -> list[asyncpg.Record]:
        full = self._downloads.full_tenants()
        async with self._pool.acquire() as conn:
            return list(await conn.fetch(Q.claim_media, limit, self._lease, full))

    async def run_once(self) -> int:
        """Claim and download one batch the way `step` does, waiting for it; the number of rows
        claimed."""
        claimed = self._start(await self._claim(self._downloads.free))
        await self._downloads.join()
        return claimed

    async def _fetch(self, row: asyncpg.Record) -> None:
        try:
            file, digest = await self._download(row)
        except Exception as exc:  # every failure is recorded on the row, none stops the loop
            await self._failed_attempt(row, exc)
            return
        await self._record(
            row, Q.media_stored, file.content, len(file.content), file.mime_type or None, digest
        )
        logger.info(
            "inbound media stored",
            extra={
                "media_row": row["id"],
                "tenant_id": str(row["tenant_id"]),
                "size": len(file.content),
            },
        )

    async def _download(self, row: asyncpg.Record) -> tuple[MediaFile, str]:
        given_up = lease_expired(row["attempts"], self._max_attempts)
        if given_up is not None:
            raise MediaRefused(given_up)
        if not row["registered"]:
            raise MediaRefused("the number is no longer registered with this tenant")
        if row["access_token_enc"] is None:
            raise MediaRefused("the number has no Cloud API access token to download with")
        provider = self._provider_for(row)
        file = await provider.download_media(row["media_id"], max_bytes=INBOUND_MAX_BYTES)
        digest = hashlib.sha256(file.content).digest()
        expected = row["sha256"]
        matches = sha256_matches(expected, digest) if expected else None
        if matches is False:
            raise MediaRefused(
                f"sha256 mismatch: the webhook gave {expected}, the downloaded bytes are "
                f"{digest.hex()}"
            )
        if expected and matches is None:
            logger.warning(
                "inbound media sha256 unreadable, stored unchecked", extra={"media_row": row["id"]}
            )
        return file, digest.hex()

    async def _failed_attempt(self, row: asyncpg.Record, exc: Exception) -> None:
        reason = _reason(exc)
        permanent = isinstance(exc, MediaRefused) or (
            isinstance(exc, GraphError) and not exc.retryable
        )
        attempts = int(row["attempts"])
        if permanent or attempts >= self._max_attempts:
            if not permanent:
                reason = f"gave up after {attempts} attempts: {reason}"
            await self._record(row, Q.media_failed, reason)
            logger.warning(
                "inbound media failed",
                extra={"media_row": row["id"], "tenant_id": str(row["tenant_id"]), "error": reason},
            )
            return
        if not isinstance(exc, GraphError):
            logger.exception("inbound media download error", extra={"media_row": row["id"]})
        delay = delay_for(exc, attempts) if isinstance(exc, GraphError) else DEFAULT.delay(attempts)
        await self._record(row, Q.media_retry, reason, delay)

    async def _record(self, row: asyncpg.Record, query: str, *args: object) -> None:
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(query, row["id"], *args)
        except DATABASE_ERRORS as exc:
            # Not recorded: the lease runs out and the row is claimed again.
            logger.warning(
                "media outcome not recorded", extra={"media_row": row["id"], "error": repr(exc)}
            )


def _reason(exc: Exception) -> str:
    if isinstance(exc, GraphError):
        code = f" ({exc.code})" if exc.code is not None else ""
        return f"{type(exc).__name__}{code}: {exc.message}"[:1000]
    if isinstance(exc, MediaRefused):
        return str(exc)[:1000]
    return f"{type(exc).__name__}: {exc}"[:1000]
