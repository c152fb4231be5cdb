"""The campaign runner: the worker consumer that feeds running campaigns into the outbox.

Each step takes the campaign whose next feed is due (its row locked, SKIP LOCKED: one worker
feeds a campaign at a time) and, in that one transaction, queues the next few seconds of its
recipients at the number's throughput (`FEED_AHEAD_SECONDS`) as outbox rows of priority 1,
marking them queued. A worker killed mid-feed commits neither; the outbox's own guarantees
take over from there, so a campaign survives restarts and never sends twice to a recipient.
A worker killed mid-request leaves its send `unknown`: every campaign send carries its
campaign and line as `biz_opaque_callback_data`, so the runner settles such a send from the
statuses Meta sends about it, or sends it again when none came within the grace
(`WA_CAMPAIGN_RESEND_AFTER_SECONDS`): each recipient gets the campaign exactly once.

Keeping only seconds of a campaign in the outbox makes pause and cancel immediate and lets the
sender claim a conversation's reply (priority 0) ahead of the campaign's next message. Before
each feed the runner applies the limits: the number's quality (RED pauses), a burst of
pushback failures (131049, 131050, 130472 pause), opt-outs (marketing and free-form), closed windows
(free-form), and the messaging limit's new recipients per rolling 24 hours (the rest wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import asyncpg

from wa_cloud.campaigns.broadcasts import (
    SERVICE,
    compose_for,
    honours_opt_outs,
    sending_line,
)
from wa_cloud.campaigns.limits import limit_of
from wa_cloud.db import channels
from wa_cloud.db.pool import jsonb_text
from wa_cloud.db.queries import Q
from wa_cloud.inbound.parse import message_text
from wa_cloud.metrics import Metrics
from wa_cloud.resources import Resources
from wa_cloud.window import window_state
from wa_cloud.worker import idle_wait

logger = logging.getLogger(__name__)

FEED_AHEAD_SECONDS: Final = 2.0  # how much of a campaign waits in the outbox at most
FEED_EVERY_SECONDS: Final = 0.5
HELD_RETRY_SECONDS: Final = 60.0  # a campaign held by the messaging limit looks again this often
MAX_FEED: Final = 2000
SETTLE_EVERY_SECONDS: Final = 5.0  # how often sends left unknown are looked up
# A number's new recipients of the rolling 24 hours are counted this often (a count reads the
# day's template sends); between counts, the feeds add the new recipients they queue.
RECOUNT_SECONDS: Final = 30.0
# Pushback: of the campaign's last RECENT finished sends, this many failed for 131049 / 131050 /
# 130472 (Meta holding back, users who stopped marketing): stop before the quality rating drops.
RECENT: Final = 200
PUSHBACK_PAUSE: Final = 20


class CampaignRunner:
    name = "campaigns"
    channel = channels.CAMPAIGNS

    @classmethod
    def from_resources(cls, resources: Resources) -> CampaignRunner:
        settings = resources.settings
        return cls(
            resources.pool,
            resources.metrics,
            poll_seconds=settings.worker_poll_seconds,
            resend_after_seconds=settings.campaign_resend_after_seconds,
        )

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        *,
        poll_seconds: float = 2.0,
        resend_after_seconds: float = 900.0,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self.poll_seconds = poll_seconds
        self._resend_after = resend_after_seconds
        self._next_settle = 0.0
        self._today: dict[str, tuple[float, int]] = {}  # number: (counted at, recipients today)
        self.wake = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        yield

    async def step(self) -> float | None:
        if time.monotonic() >= self._next_settle:
            self._next_settle = time.monotonic() + SETTLE_EVERY_SECONDS
            await self.settle_unknown()
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                campaign = await conn.fetchrow(Q.claim_broadcast)
                if campaign is not None:
                    await self.feed(conn, campaign)
                    return None
            seconds = await conn.fetchval(Q.campaigns_next_wake)
        return idle_wait(self.poll_seconds, seconds)

    async def settle_unknown(self) -> None:
        """Sends a dead worker left `unknown`: settled from Meta's statuses naming them, or
        queued again after the grace with none."""
        async with self._pool.acquire() as conn:
            settled = await conn.fetch(Q.settle_unknown_campaign_sends)
            again = await conn.fetch(Q.resend_unheard_campaign_sends, self._resend_after)
            for row in again:
                await conn.execute(Q.notify_outbox, row["phone_number_id"])
        if settled:
            self._metrics.inc("wa_campaign_sends_settled_total", len(settled))
            logger.info(
                "campaign sends settled from Meta's statuses", extra={"count": len(settled)}
            )
        if again:
            sends = sum(r["sends"] for r in again)
            self._metrics.inc("wa_campaign_sends_resent_total", sends)
            logger.warning(
                "campaign sends unheard of by Meta queued again",
                extra={"count": sends, "numbers": [r["phone_number_id"] for r in again]},
            )

    async def _recipients_today(self, conn: asyncpg.Connection, pnid: str) -> int:
        counted = self._today.get(pnid)
        if counted is None or time.monotonic() - counted[0] > RECOUNT_SECONDS:
            counted = (time.monotonic(), await conn.fetchval(Q.unique_recipients_today, pnid))
            self._today[pnid] = counted
        return counted[1]

    async def _pause(self, conn: asyncpg.Connection, campaign: asyncpg.Record, reason: str) -> None:
        await conn.execute(Q.stop_broadcasts, [campaign["id"]], "paused", reason, None)
        self._metrics.inc("wa_campaigns_paused_total")
        logger.warning(
            "campaign paused", extra={"broadcast_id": str(campaign["id"]), "reason": reason}
        )

    async def feed(self, conn: asyncpg.Connection, campaign: asyncpg.Record) -> None:
        broadcast_id = campaign["id"]
        if campaign["removed_at"] is not None:
            await self._pause(conn, campaign, "number_removed")
            return
        if not campaign["active"]:
            await self._pause(conn, campaign, "tenant_inactive")
            return
        if (campaign["quality_rating"] or "").upper() == "RED":
            await self._pause(conn, campaign, "quality_rating_red")
            return
        await conn.execute(Q.opt_out_refusals, broadcast_id)
        recent = await conn.fetchrow(Q.broadcast_recent_failures, broadcast_id, RECENT)
        if recent["template_gone"]:
            await self._pause(
                conn, campaign, f"template_unavailable: sends failed with {recent['template_gone']}"
            )
            return
        if recent["pushback"] >= PUSHBACK_PAUSE:
            await self._pause(
                conn,
                campaign,
                f"pushback: {recent['pushback']} of the last {recent['finished']} sends failed "
                f"with {recent['codes']}",
            )
            return
        rate = float(campaign["throughput_mps"])
        waiting = await conn.fetchval(Q.broadcast_in_outbox, broadcast_id)
        room = min(MAX_FEED, math.ceil(rate * FEED_AHEAD_SECONDS) - waiting)
        if room <= 0:
            await conn.execute(Q.next_feed, broadcast_id, FEED_EVERY_SECONDS, None)
            return
        pending = await conn.fetch(Q.pending_recipients, broadcast_id, room)
        if not pending:
            await conn.execute(Q.finish_broadcast, broadcast_id)
            return
        held = await self._queue(conn, campaign, pending)
        await conn.execute(
            Q.next_feed,
            broadcast_id,
            HELD_RETRY_SECONDS if held else FEED_EVERY_SECONDS,
            held,
        )

    async def _queue(
        self, conn: asyncpg.Connection, campaign: asyncpg.Record, pending: list[asyncpg.Record]
    ) -> str | None:
        """Queue what may go of `pending`; the reason the rest waits, if the limit holds it."""
        broadcast_id, pnid = campaign["id"], campaign["phone_number_id"]
        category = campaign["category"]
        numbers = [p["recipient"] for p in pending]
        opted = (
            {
                r["recipient"]
                for r in await conn.fetch(Q.opted_out_of, pnid, numbers, campaign["tenant_id"])
            }
            if honours_opt_outs(category)
            else set()
        )
        contacts = {
            r["wa_id"]: r
            for r in await conn.fetch(Q.recipient_contacts, pnid, campaign["tenant_id"], numbers)
        }
        is_web_session = campaign["provider"] != "cloud"
        room: int | None = None
        known: set[str] = set()
        if campaign["template"] is not None and not is_web_session:
            limit = limit_of(campaign["messaging_limit"])
            if limit is not None:
                room = limit - await self._recipients_today(conn, pnid)
                known = {
                    r["recipient"]
                    for r in await conn.fetch(Q.recipients_messaged_today, pnid, numbers)
                }
        skips: list[tuple[str, str]] = []
        sends: list[tuple[str, int | None, str, str | None, dict[str, Any]]] = []
        held: str | None = None
        for row in pending:
            to = row["recipient"]
            contact = contacts.get(to)
            if to in opted:
                skips.append((to, "opted_out"))
                continue
            if category == SERVICE and not is_web_session:
                window = window_state(
                    contact["last_inbound_at"] if contact else None,
                    contact["window_closed_at"] if contact else None,
                )
                if not window.open:
                    skips.append((to, "window_closed"))
                    continue
            if room is not None and to not in known:
                if room <= 0:
                    held = "messaging_limit"
                    break  # in line order: the rest waits for the rolling 24 hours
                room -= 1
            composed = compose_for(
                campaign["template"],
                campaign["message"],
                to,
                row["variables"],
                None if is_web_session else sending_line(broadcast_id, row["line"]),
            )
            sends.append(
                (
                    to,
                    contact["id"] if contact else None,
                    composed.kind,
                    message_text(composed.body),
                    composed.body,
                )
            )
        if skips:
            await conn.execute(
                Q.skip_recipients, broadcast_id, [s[0] for s in skips], [s[1] for s in skips]
            )
        if room is not None:
            counted_at, today = self._today[pnid]
            self._today[pnid] = (counted_at, today + sum(1 for s in sends if s[0] not in known))
        if sends:
            await conn.execute(
                Q.enqueue_campaign_messages,
                campaign["tenant_id"],
                pnid,
                broadcast_id,
                [s[0] for s in sends],
                [s[1] for s in sends],
                [s[2] for s in sends],
                [s[3] for s in sends],
                [jsonb_text(s[4]) for s in sends],
            )
            await conn.execute(Q.notify_outbox, pnid)
            self._metrics.inc("wa_campaign_messages_queued_total", len(sends))
        return held
