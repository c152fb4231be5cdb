"""The web sessions' watchdog: the worker consumer that makes every gateway call a session's
lifecycle needs, from the `web_sessions` rows.

Each row says what is due next (`action` at `due_at`): create the instance (with a fresh
webhook secret), connect it (a QR code to scan), check it, log it out. The gateway's events
(indexed by the worker, inbound/sessions.py) move the rows too; between events the watchdog
asks the gateway every `CHECK_SECONDS`, reconnects a dropped session with backoff, recreates an
instance the gateway lost, and mails the business when only a new scan will bring it back.
A thousand idle sessions are a thousand rows: nothing is held in memory between steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import httpx

from wa_cloud.config import Settings
from wa_cloud.db import channels
from wa_cloud.db.queries import Q
from wa_cloud.graph.errors import AuthenticationFailed, GraphError, Undeliverable
from wa_cloud.inbound.sessions import CHECK_SECONDS, QR_IMAGE, RECONNECT_BACKOFF
from wa_cloud.providers.numbers import gateway_of
from wa_cloud.providers.websession import Gateway, new_webhook_secret
from wa_cloud.resources import Resources
from wa_cloud.secretbox import SecretBox, SecretUnreadable
from wa_cloud.tenants import audit
from wa_cloud.tenants.links import make_link
from wa_cloud.tenants.mail import MailNotConfigured, MailNotSent, compose_rescan, send_invitation
from wa_cloud.worker import idle_wait

logger = logging.getLogger(__name__)

CLAIM = 16  # sessions per step; their calls run together
LEASE_SECONDS = 120.0  # longer than a step's calls can take (each is bounded by the client)
# A gateway that refuses our key is asked again this rarely until the tenant fixes it.
REFUSED_RETRY_SECONDS = 900.0


@dataclass(slots=True)
class Outcome:
    """What one step learned and what comes next."""

    action: str
    due_in: float
    attempts: int
    state: str | None = None  # None: nothing learned about the state
    reason: str | None = None
    qr: str | None = None
    pairing_code: str | None = None
    mailed: bool = False


class SessionWatchdog:
    channel = channels.SESSIONS

    def __init__(
        self, pool: asyncpg.Pool, http: httpx.AsyncClient, box: SecretBox, settings: Settings
    ) -> None:
        self.name = "sessions"
        self.poll_seconds = settings.worker_poll_seconds
        self.wake = asyncio.Event()
        self._pool = pool
        self._http = http
        self._box = box
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")

    @classmethod
    def from_resources(cls, resources: Resources) -> SessionWatchdog:
        return cls(resources.pool, resources.tenant_http, resources.box, resources.settings)

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # each step finishes its calls before it returns

    async def step(self) -> float | None:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(Q.claim_sessions, CLAIM, LEASE_SECONDS)
        if not rows:
            async with self._pool.acquire() as conn:
                due_in = await conn.fetchval(Q.next_session_due)
            return idle_wait(self.poll_seconds * 10, due_in)
        outcomes = await asyncio.gather(*(self._step_one(r) for r in rows))
        async with self._pool.acquire() as conn, conn.transaction():
            for row, outcome in zip(rows, outcomes, strict=True):
                await self._write(conn, row, outcome)
        return None if len(rows) == CLAIM else 0.0

    async def _write(self, conn: asyncpg.Connection, row: asyncpg.Record, out: Outcome) -> None:
        await conn.execute(
            Q.session_stepped,
            row["phone_number_id"],
            row["tenant_id"],
            out.state,
            out.reason,
            out.qr,
            out.pairing_code,
            out.action,
            out.due_in,
            out.attempts,
            row["state_at"],
            out.mailed,
        )
        if out.mailed:
            await audit.record(
                conn,
                "number.session_needs_scan",
                tenant_id=row["tenant_id"],
                actor="system",
                severity="warning",
                detail={"phone_number_id": row["phone_number_id"]},
            )

    async def _step_one(self, row: Mapping[str, Any]) -> Outcome:
        attempts = int(row["attempts"])
        mailed = bool(row["mail_due"]) and await self._mail(row)
        if row["action"] == "none":
            # A mail that could not go now is tried again in a while, not at every step.
            return Outcome("none", 0 if mailed else CHECK_SECONDS, attempts, mailed=mailed)
        try:
            gateway = gateway_of(self._http, self._box, row)
        except SecretUnreadable:
            reason = "The gateway's API key cannot be opened; register the number again."
            return Outcome("none", 0, attempts, "closed", reason)
        try:
            outcome = await self._act(gateway, row)
        except AuthenticationFailed:
            reason = "The gateway refused the API key."
            return Outcome("check", REFUSED_RETRY_SECONDS, attempts + 1, "closed", reason)
        except GraphError as exc:
            delay = RECONNECT_BACKOFF.delay(attempts + 1)
            logger.info(
                "gateway call failed",
                extra={"phone_number_id": row["phone_number_id"], "error": type(exc).__name__},
            )
            return Outcome(str(row["action"]), delay, attempts + 1, mailed=mailed)
        outcome.mailed = mailed
        return outcome

    async def _mail(self, row: Mapping[str, Any]) -> bool:
        """The business told (at its invitation's address) that the number needs a new scan,
        with its status page's link; False leaves the mail due for the next step."""
        if not row["email"]:
            return True  # nobody to tell: the event and the forward are all there is
        link = make_link(self._settings, row["tenant_id"], generation=row["link_generation"])
        message = compose_rescan(
            self._settings,
            to=row["email"],
            tenant_name=row["tenant_name"],
            number=str(row["display_phone_number"] or row["phone_number_id"]),
            link=link,
        )
        try:
            await send_invitation(self._settings, message, link, tenant_id=row["tenant_id"])
        except MailNotConfigured:
            return True  # said in the log once per session; the event stays in the log
        except MailNotSent as exc:
            return exc.refused  # a refused address will not take it later either
        return True

    async def _act(self, gateway: Gateway, row: Mapping[str, Any]) -> Outcome:
        action, attempts = str(row["action"]), int(row["attempts"])
        number = row["display_phone_number"]  # a web session's: digits (the API's rule)
        if action == "create":
            secret, digest = new_webhook_secret()
            async with self._pool.acquire() as conn:
                await conn.execute(
                    Q.save_session_secret, row["phone_number_id"], row["tenant_id"], digest
                )
            url = f"{self._base_url}/webhook/websession/{row['phone_number_id']}"
            try:
                await gateway.create(url, secret)
            except AuthenticationFailed as exc:
                if exc.http_status != 403:
                    raise
                # Made by an attempt that did not finish: it gets the new secret instead.
                await gateway.set_webhook(url, secret)
            return await self._connect(gateway, number, attempts)
        if action == "connect":
            try:
                return await self._connect(gateway, number, attempts)
            except Undeliverable:  # the gateway lost the instance: made again, a new scan
                return Outcome("create", 0, attempts + 1)
        if action == "logout":
            await gateway.logout()
            return Outcome("none", 0, 0)
        # check
        try:
            live = await gateway.state()
        except Undeliverable:
            return Outcome("create", 0, attempts + 1, "closed", "The gateway lost the session.")
        if live == "open":
            return Outcome("check", CHECK_SECONDS, 0)
        if live == "close" and row["state"] != "refused":
            # Dropped without a word (the contract's "open but dead"): reconnect, with backoff.
            delay = RECONNECT_BACKOFF.delay(attempts + 1)
            return Outcome("connect", delay, attempts + 1, "closed", "The session dropped.")
        return Outcome("check", CHECK_SECONDS, attempts)

    @staticmethod
    async def _connect(gateway: Gateway, number: str | None, attempts: int) -> Outcome:
        answer = await gateway.connect(number)
        image = answer.get("base64")
        instance = answer.get("instance")
        if isinstance(instance, Mapping) and instance.get("state") == "open":
            return Outcome("check", CHECK_SECONDS, 0)  # the event says who scanned it
        if isinstance(image, str) and QR_IMAGE.fullmatch(image):
            pairing = answer.get("pairingCode")
            return Outcome(
                "check",
                CHECK_SECONDS,
                attempts,
                "qr",
                None,
                image,
                pairing if isinstance(pairing, str) else None,
            )
        # No QR yet ({"count": 0}): it comes as a qrcode.updated event.
        return Outcome("check", CHECK_SECONDS, attempts, "connecting")


async def register_session(conn: asyncpg.Connection, phone_number_id: str, tenant_id: UUID) -> None:
    """A web-session number's row: the watchdog creates its instance at once. The secret is
    made when the instance is (none exists before); until then no webhook is accepted."""
    _, placeholder = new_webhook_secret()
    await conn.execute(Q.insert_web_session, phone_number_id, tenant_id, placeholder)
    await conn.execute(Q.wake_sessions, phone_number_id)


def session_json(row: asyncpg.Record | None) -> dict[str, Any]:
    """`GET /v1/numbers/{id}/qr`'s shape (design.md)."""
    if row is None:
        return {"state": "logged_out", "qr_base64": None, "pairing_code": None}
    state_at: datetime = row["state_at"]
    return {
        "state": row["state"],
        "qr_base64": row["qr_base64"] if row["state"] == "qr" else None,
        "pairing_code": row["pairing_code"] if row["state"] == "qr" else None,
        "reason": row["reason"],
        "since": state_at.isoformat(),
    }
