"""Follow-ups and reminders going out: the worker's consumer that sends each due row once.

Rows are scheduled by ai/followup_rules.py (the assistant's follow-ups) and api/followups.py
(reminders). `FollowUpSender` claims due rows with a lease and, per row:
1. re-checks at send time: the number still the tenant's and not removed since the row was
   scheduled (a removal ends what waited, even when the number comes back), the tenant
   active; for a follow-up also its rule still there, the assistant on, the conversation not
   paused, the customer not answered since, not opted out (campaign opt-outs: STOP, Meta's
   preferences, the API; a reminder, the business's own message, ignores them as
   POST /v1/messages does), our last message not failed, and the rule's hours (`between`): a
   row claimed outside them waits for their next opening;
2. picks what goes: inside the 24-hour window free-form text (the rule's or reminder's own, or
   written by the model from the conversation), outside it only the rule's or reminder's
   template, or nothing (skipped "outside the customer-service window"); a model that fails
   falls back to the rule's template when it has one;
3. finishes in one transaction, fenced by its lease: the message queued in the outbox
   (idempotent per row), the row's outcome, the rule's next attempt (up to `max`), the credits
   and tokens. A worker that dies before that commit leaves the row to be claimed again when
   the lease ends: the model may be asked twice, the customer gets it once.

A reminder is the business's own message, set through the API: it goes out whether the
assistant is on or the conversation paused (a follow-up does not). A follow-up written by the
model costs what a reply does (`credits_per_reply`, at least 1 on the platform's model) and its
tokens count as `follow_up`; a fixed text or a template costs no credits.

"Now" comes from an injectable clock (`Clock`, real time by default): the claim, the lease and
every check take it, so a test drives time without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg
import httpx

from wa_cloud.ai.config import BotConfig, from_row
from wa_cloud.ai.followup_rules import (
    FollowUpRule,
    follow_up_due,
    insert_follow_ups,
    into_hours,
    within,
    zone_of,
)
from wa_cloud.ai.models import Answer, ModelFailed, Models
from wa_cloud.ai.prompt import Turn
from wa_cloud.ai.replies import (
    answer_cost,
    bot_key,
    conversation,
    instructions_for,
    model_endpoint,
    record_accounts,
)
from wa_cloud.ai.split import split_reply
from wa_cloud.config import Settings
from wa_cloud.db import channels
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q
from wa_cloud.outbox.compose import Composed, compose, template_request
from wa_cloud.providers.numbers import capabilities_of
from wa_cloud.resources import Resources
from wa_cloud.secretbox import SecretBox, SecretUnreadable
from wa_cloud.window import window_state
from wa_cloud.worker import InFlight, idle_wait, lease_expired

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

MAX_IN_FLIGHT: Final = 16
MAX_PER_TENANT: Final = 4
# conversation_history leaves out the turns of reply jobs from this one on: none here.
ALL_BURSTS: Final = 2**63 - 1
# The model's brief, as the conversation's last turn (it has the number's instructions too).
FOLLOW_UP_NOTE: Final = (
    "[The customer has not answered your last message for {elapsed}. Write one short, "
    "friendly follow-up message to them that picks up where the conversation left off, in its "
    "language. Write only the message itself.]"
)
OUTSIDE_WINDOW: Final = "outside the customer-service window and no template"


def real_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed row."""

    id: int
    tenant_id: UUID
    phone_number_id: str
    contact_id: int
    kind: str  # follow_up | reminder
    rule_index: int | None
    attempt: int
    max_attempts: int
    text: str | None
    template: Mapping[str, Any] | None
    claims: int
    created_at: datetime

    @classmethod
    def claimed(cls, row: Mapping[str, Any]) -> Due:
        return cls(
            row["id"],
            row["tenant_id"],
            row["phone_number_id"],
            row["contact_id"],
            row["kind"],
            row["rule_index"],
            row["attempt"],
            row["max_attempts"],
            row["text"],
            row["template"],
            row["claims"],
            row["created_at"],
        )


@dataclass(slots=True)
class Outcome:
    """What a row's finish commits."""

    state: str  # sent | skipped | cancelled | failed
    reason: str | None = None
    text: str | None = None  # the text that goes
    template: Mapping[str, Any] | None = None  # or the template
    debit: int = 0
    usage: list[Answer] = field(default_factory=list)
    audits: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    rule: FollowUpRule | None = None
    timezone: str = "UTC"

    @property
    def sends(self) -> bool:
        return self.text is not None or self.template is not None


class FollowUpSender:
    name = "follow_ups"
    channel = channels.FOLLOW_UPS

    @classmethod
    def from_resources(cls, resources: Resources, clock: Clock = real_clock) -> FollowUpSender:
        return cls(resources.pool, resources.settings, resources.box, resources.tenant_http, clock)

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        box: SecretBox,
        tenant_http: httpx.AsyncClient,
        clock: Clock = real_clock,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._box = box
        self._tenant_http = tenant_http
        self._clock = clock
        self._max_attempts = max(1, settings.worker_max_attempts)
        self._lease = settings.worker_lease_seconds
        self.poll_seconds = settings.worker_poll_seconds
        self.wake = asyncio.Event()
        # Public so a test running the consumer in-process can wait for what a step started.
        self.jobs = InFlight(self.wake, MAX_IN_FLIGHT, MAX_PER_TENANT)
        self._models: Models | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=8)
        async with httpx.AsyncClient(limits=limits, timeout=None) as platform_http:
            self._models = Models(platform_http, self._tenant_http)
            async with self.jobs.draining(5.0):  # a row cut short is claimed again later
                yield

    async def step(self) -> float | None:
        now = self._clock()
        free = self.jobs.free
        if free:
            busy = self.jobs.busy()
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    Q.claim_follow_ups,
                    free,
                    self._lease,
                    now,
                    list(busy),
                    list(busy.values()),
                    MAX_PER_TENANT,
                )
            for row in rows:
                due = Due.claimed(row)
                self.jobs.start(self._run(due), due.tenant_id)
            if rows:
                return None
        async with self._pool.acquire() as conn:
            due_in = await conn.fetchval(Q.next_follow_up_due, self.jobs.full_tenants(), now)
        return idle_wait(self.poll_seconds, due_in)

    async def _run(self, due: Due) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(due))
        try:
            given_up = lease_expired(due.claims, self._max_attempts)
            outcome = Outcome("failed", given_up) if given_up else await self._decide(due)
            if outcome is not None:
                await self._finish(due, outcome)
        except Exception:  # a bug here must not stop the consumer; the lease brings it back
            logger.exception("follow-up failed", extra={"follow_up_id": due.id})
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, due: Due) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                async with self._pool.acquire() as conn:
                    await conn.execute(
                        Q.extend_follow_up_lease, due.id, due.claims, self._clock(), self._lease
                    )
            except DATABASE_ERRORS:
                logger.warning("follow-up lease not extended", extra={"follow_up_id": due.id})

    # Deciding -------------------------------------------------------------------------------
    async def _decide(self, due: Due) -> Outcome | None:
        """What goes out for `due`, or None when it was put back to wait for its hours."""
        async with self._pool.acquire() as conn:
            ctx = await conn.fetchrow(
                Q.reply_context, due.phone_number_id, due.contact_id, due.tenant_id
            )
            checks = await conn.fetchrow(Q.follow_up_checks, due.id)
        now = self._clock()
        if ctx is None or checks is None or not ctx["registered"]:
            return Outcome("skipped", "the number is no longer this tenant's")
        if not checks["same_registration"]:
            return Outcome("skipped", "the number was removed after this was scheduled")
        if not ctx["tenant_active"]:
            return Outcome("skipped", "tenant inactive")
        config = from_row(ctx if ctx["configured"] else None, enabled=ctx["bot_enabled"])
        capabilities = capabilities_of(ctx)
        window_open = (
            not capabilities.customer_service_window
            or window_state(ctx["last_inbound_at"], ctx["window_closed_at"], now).open
        )
        if due.kind == "reminder":
            if window_open and due.text is not None:
                return Outcome("sent", text=due.text)
            if due.template is not None:
                return Outcome("sent", template=due.template)
            return Outcome("skipped", OUTSIDE_WINDOW)
        assert due.rule_index is not None
        if due.rule_index >= len(config.follow_ups):
            return Outcome("skipped", "its rule was removed")
        rule = config.follow_ups[due.rule_index]
        if not config.enabled:
            return Outcome("skipped", "bot disabled")
        if ctx["bot_paused"]:
            return Outcome("skipped", "conversation paused")
        if ctx["last_inbound_at"] is not None and ctx["last_inbound_at"] > due.created_at:
            return Outcome("cancelled", "the customer wrote")
        # An automated nudge: a customer who said STOP (or opted out otherwise) gets none.
        if checks["opted_out"]:
            return Outcome("skipped", "the customer opted out")
        # What it follows never reached the customer (Meta refused it, the number was removed).
        if checks["last_out_status"] == "failed":
            return Outcome("skipped", "our last message was not delivered")
        zone = zone_of(config.timezone)
        if not within(now, rule.between, zone):
            async with self._pool.acquire() as conn:
                await conn.execute(
                    Q.postpone_follow_up, due.id, due.claims, into_hours(now, rule.between, zone)
                )
            return None
        if not window_open:
            if rule.template is None:
                return Outcome("skipped", OUTSIDE_WINDOW)
            return Outcome("sent", template=rule.template, rule=rule, timezone=config.timezone)
        if rule.text is not None:
            return Outcome("sent", text=rule.text, rule=rule, timezone=config.timezone)
        outcome = await self._written(due, ctx, config, now)
        outcome.rule, outcome.timezone = rule, config.timezone
        if outcome.state == "failed" and rule.template is not None and capabilities.templates:
            outcome.state, outcome.template = "sent", rule.template  # the reason stays
        return outcome

    async def _written(
        self, due: Due, ctx: Mapping[str, Any], config: BotConfig, now: datetime
    ) -> Outcome:
        """The follow-up the model writes from the conversation (as a reply is written)."""
        try:
            key = bot_key(self._box, due.phone_number_id, ctx["api_key_enc"])
        except SecretUnreadable:
            outcome = Outcome("skipped", "the bot's model key cannot be opened")
            outcome.audits.append(
                ("bot.key_unreadable", "error", {"phone_number_id": due.phone_number_id})
            )
            return outcome
        endpoint, model = model_endpoint(self._settings, config, key)
        if endpoint is None:
            return Outcome("skipped", "no model configured")
        cost = answer_cost(config, key)
        if ctx["credits_balance"] < cost:
            return Outcome("skipped", "out of credits")
        note = FOLLOW_UP_NOTE.format(elapsed=_elapsed(now - due.created_at))
        turns = await conversation(
            self._pool, due.contact_id, due.tenant_id, ALL_BURSTS, config, Turn("user", note)
        )
        instructions = instructions_for(config, ctx, now)
        assert self._models is not None
        try:
            answer = await self._models.answer(
                endpoint,
                model=model,
                api=config.api_for(model),
                instructions=instructions,
                turns=turns,
                temperature=config.temperature,
                max_output_tokens=config.max_output_tokens,
                reasoning_effort=config.reasoning_effort,
            )
        except ModelFailed as exc:
            outcome = Outcome("failed", f"model failed: {exc}")
            outcome.audits.append(
                (
                    "bot.model_failed",
                    "error",
                    {
                        "phone_number_id": due.phone_number_id,
                        "follow_up_id": due.id,
                        "error": str(exc),
                    },
                )
            )
            return outcome
        if not answer.text.strip():
            return Outcome("skipped", "the model said nothing", usage=[answer])
        # One message: a follow-up longer than WhatsApp's limit keeps its first part.
        return Outcome("sent", text=split_reply(answer.text)[0], debit=cost, usage=[answer])

    # Finishing ------------------------------------------------------------------------------
    async def _finish(self, due: Due, outcome: Outcome) -> None:
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(Q.lock_follow_up_contact, due.id)
            gates = await conn.fetchrow(Q.lock_follow_up, due.id, due.claims)
            if gates is None:
                logger.info("follow-up lease lost", extra={"follow_up_id": due.id})
                return
            if outcome.sends and not (gates["registered"] and gates["tenant_active"]):
                outcome = Outcome("skipped", "the number or tenant closed meanwhile")
            elif outcome.sends and due.kind == "follow_up" and not gates["bot_may_talk"]:
                # Paused, switched off while the model wrote: a person may be answering now.
                outcome = Outcome("skipped", "paused while it was written", usage=outcome.usage)
            if outcome.debit:
                debited = await conn.fetchrow(
                    Q.debit_follow_up, due.tenant_id, due.phone_number_id, due.id, outcome.debit
                )
                if debited["debited"] is None and not debited["repeated"]:
                    outcome = Outcome("skipped", "out of credits", usage=outcome.usage)
            message_id = None
            if outcome.sends:
                message_id = await self._enqueue(conn, due, gates["recipient"], outcome)
            await record_accounts(
                conn,
                due.tenant_id,
                due.phone_number_id,
                [("follow_up", answer) for answer in outcome.usage],
                outcome.audits,
            )
            await conn.execute(
                Q.finish_follow_up,
                due.id,
                due.claims,
                outcome.state,
                None if outcome.reason is None else outcome.reason[:500],
                message_id,
                outcome.text,
                None if outcome.template is None else dict(outcome.template),
            )
            rule = outcome.rule
            if outcome.sends and rule is not None and due.attempt < due.max_attempts:
                assert due.rule_index is not None
                next_due = follow_up_due(now, rule, zone_of(outcome.timezone))
                await insert_follow_ups(
                    conn,
                    due.tenant_id,
                    due.phone_number_id,
                    due.contact_id,
                    [(due.rule_index, due.attempt + 1, due.max_attempts, next_due)],
                )
        logger.info(
            "follow-up finished",
            extra={"follow_up_id": due.id, "kind": due.kind, "state": outcome.state},
        )

    async def _enqueue(
        self, conn: asyncpg.Connection, due: Due, recipient: str, outcome: Outcome
    ) -> UUID:
        """The outbox row, queued once per follow-up whatever claim gets here."""
        composed: Composed
        if outcome.text is not None:
            composed = compose({"to": recipient, "type": "text", "text": {"body": outcome.text}})
        else:
            assert outcome.template is not None
            composed = template_request(recipient, outcome.template)
        key = f"follow-up:{due.id}"
        row = await conn.fetchrow(
            Q.enqueue_message,
            due.tenant_id,
            due.phone_number_id,
            due.contact_id,
            composed.kind,
            outcome.text,
            composed.body,
            composed.body,
            composed.recipient,
            key,
            None,
            None,
            # A reminder is the business's message; a follow-up is the assistant's.
            "bot" if due.kind == "follow_up" else "human",
            None,
        )
        if row is None:  # queued already (the fence keeps that from committing twice)
            existing = await conn.fetchrow(Q.find_idempotent, due.tenant_id, key)
            message_id: UUID = existing["id"]
            return message_id
        await conn.execute(Q.ensure_pacing, due.phone_number_id)
        await conn.execute(Q.notify_outbox, due.phone_number_id)
        queued: UUID = row["id"]
        return queued


def _elapsed(delta: timedelta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes < 120:
        return f"{minutes} minutes"
    hours = round(minutes / 60)
    return f"{hours} hours" if hours < 48 else f"{round(hours / 24)} days"
