"""The reply pipeline: the worker's consumer that answers each conversation's burst once.

The indexer schedules a job when a message arrives (ai/schedule.py); its debounce lets the rest
of the burst join it. `Replier` claims due jobs with a lease and, per job:
1. reads the number, its tenant, the assistant's configuration and the conversation;
2. takes chat commands first (never sent to the model), then the gates: tenant inactive, bot
   off, conversation paused, window closed, no credits;
3. marks the messages read with the typing indicator, reads the burst's media with Gemini,
   builds the history from the database and asks the model;
4. finishes in one transaction, fenced by its lease: the job done, the answer queued in the
   outbox (idempotent per job and part), the credits debited, the tokens recorded.
A worker that dies anywhere before that commit leaves the job to be claimed again when the
lease ends: the model may be asked twice, the customer is answered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg
import httpx

from wa_cloud.ai.commands import Command, confirmation, parse_command
from wa_cloud.ai.config import BotConfig, from_row
from wa_cloud.ai.files import FileSender, file_sender
from wa_cloud.ai.followup_rules import schedule_follow_ups
from wa_cloud.ai.memory import Extraction, contact_fields_text, remember
from wa_cloud.ai.models import Answer, Endpoint, ModelFailed, Models
from wa_cloud.ai.prompt import Turn, render_instructions, trim_history
from wa_cloud.ai.split import split_reply
from wa_cloud.ai.tools import ToolBox, ToolCall, open_secrets
from wa_cloud.ai.understand import MediaReader
from wa_cloud.ai.usage import Feature, debit_reply, record_tokens
from wa_cloud.config import Settings
from wa_cloud.db import channels
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q
from wa_cloud.forwarding.events import BOT_REPLY, enqueue_forward
from wa_cloud.jsonsafe import depth_within, storable
from wa_cloud.media.rules import MEDIA_KINDS
from wa_cloud.outbox.compose import compose
from wa_cloud.providers.base import Provider, ProviderFor
from wa_cloud.providers.numbers import number_providers
from wa_cloud.resources import Resources
from wa_cloud.secretbox import SecretBox, SecretUnreadable
from wa_cloud.tenants import audit
from wa_cloud.tenants.sealed import BOT_API_KEY
from wa_cloud.window import window_state
from wa_cloud.worker import InFlight, idle_wait, lease_expired

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT: Final = 32
MAX_PER_TENANT: Final = 8
HISTORY_TOKENS: Final = 6000
# A burst whose media is still downloading waits for it this long (then goes without it).
MEDIA_WAIT_SECONDS: Final = 30.0
MEDIA_RETRY_SECONDS: Final = 0.5
MAX_REPLY_PARTS: Final = 5
NO_MEDIA_TEXT: Final = (
    "Lo siento, no puedo escuchar audios ni ver imágenes o videos. ¿Me lo escribes, por favor? "
    "/ Sorry, I can't listen to audio or see images or videos here. Could you write it, please?"
)
MEDIA_LABELS: Final = {
    "audio": "voice note",
    "voice": "voice note",
    "image": "image",
    "sticker": "sticker",
    "video": "video",
    "document": "document",
}


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    tenant_id: UUID
    phone_number_id: str
    contact_id: int
    attempts: int
    created_at: datetime


@dataclass(slots=True)
class Plan:
    """What a job's finish commits: its outcome, the messages, the effects, the accounts."""

    outcome: str
    parts: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    commands: bool = False  # a command's confirmations go out even to a paused conversation
    effects: list[Callable[[asyncpg.Connection], Awaitable[Any]]] = field(default_factory=list)
    debit: int = 0
    usage: list[tuple[Feature, Answer]] = field(default_factory=list)
    # (action, severity, detail) of what the operator should see in the audit log
    audits: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    tools: ToolBox | None = None  # the calls its model made, logged
    # The contact fields to extract once the answer committed (ai/memory.py).
    extraction: Extraction | None = None
    files: FileSender | None = None  # the number's files its model may send (send_file)

    def text(self, body: str) -> None:
        # A model's answer is bounded here whatever the server sent (max_output_tokens is a
        # request, not a promise).
        for part in split_reply(body)[:MAX_REPLY_PARTS]:
            self.parts.append(("text", {"body": part}, part))


class Replier:
    name = "replies"
    channel = channels.REPLIES

    @classmethod
    def from_resources(cls, resources: Resources) -> Replier:
        return cls(
            resources.pool,
            resources.settings,
            resources.box,
            number_providers(resources.graph, resources.tenant_http, resources.box),
            resources.tenant_http,
        )

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        box: SecretBox,
        provider_for: ProviderFor,
        tenant_http: httpx.AsyncClient,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._box = box
        self._provider_for = provider_for
        self._tenant_http = tenant_http
        self._max_attempts = max(1, settings.worker_max_attempts)
        # Kept alive by a heartbeat while the job runs (a model may take a minute): a worker
        # that died is noticed within one lease, however long answers take.
        self._lease = settings.worker_lease_seconds
        self.poll_seconds = settings.worker_poll_seconds
        self.wake = asyncio.Event()
        self._jobs = InFlight(self.wake, MAX_IN_FLIGHT, MAX_PER_TENANT)
        # Read ticks beside the jobs: their own slots, and finishing one wakes nobody.
        self._marks = InFlight(asyncio.Event(), MAX_IN_FLIGHT, MAX_IN_FLIGHT)
        self._models: Models | None = None
        self._reader: MediaReader | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(limits=limits, timeout=None) as platform_http:
            self._models = Models(platform_http, self._tenant_http)
            if self._settings.gemini_api_key:
                self._reader = MediaReader(
                    self._settings.gemini_api_key, self._settings.gemini_base_url, platform_http
                )
            try:
                # A job cut short is claimed again when its lease ends.
                async with self._marks.draining(1.0), self._jobs.draining(5.0):
                    yield
            finally:
                if self._reader is not None:
                    await self._reader.aclose()

    async def step(self) -> float | None:
        free = self._jobs.free
        if free:
            busy = self._jobs.busy()
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    Q.claim_replies,
                    free,
                    self._lease,
                    list(busy),
                    list(busy.values()),
                    MAX_PER_TENANT,
                )
            for row in rows:
                job = Job(
                    row["id"],
                    row["tenant_id"],
                    row["phone_number_id"],
                    row["contact_id"],
                    row["attempts"],
                    row["created_at"],
                )
                self._jobs.start(self._run(job), job.tenant_id)
            if rows:
                return None
        async with self._pool.acquire() as conn:
            due = await conn.fetchval(Q.next_reply_due, self._jobs.full_tenants())
        return idle_wait(self.poll_seconds, due)

    async def _run(self, job: Job) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(job))
        try:
            given_up = lease_expired(job.attempts, self._max_attempts)
            plan = Plan(f"failed: {given_up}") if given_up else await self._plan(job)
            if plan is None:
                return  # postponed: its media is still on its way
            if plan.tools is not None and plan.tools.calls:
                # Committed apart, before the finish: each call did happen, whatever the finish
                # becomes.
                async with self._pool.acquire() as conn:
                    await log_tool_calls(conn, job, plan.tools.calls)
            finished = await self._finish(job, plan)
            if finished is not None and finished.extraction is not None and self._models:
                # After the commit: the answer is on its way whatever the extraction does.
                await remember(self._pool, self._models, finished.extraction)
        except Exception:  # a bug here must not stop the consumer; the lease brings it back
            logger.exception("reply job failed", extra={"reply_id": job.id})
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, job: Job) -> None:
        """Extend the job's lease while it runs; a missed beat (database away) only lets the
        lease run out, and the fence keeps a second answer from committing."""
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                async with self._pool.acquire() as conn:
                    await conn.execute(Q.extend_reply_lease, job.id, job.attempts, self._lease)
            except DATABASE_ERRORS:
                logger.warning("reply lease not extended", extra={"reply_id": job.id})

    # Deciding -------------------------------------------------------------------------------
    async def _plan(self, job: Job) -> Plan | None:
        async with self._pool.acquire() as conn:
            ctx = await conn.fetchrow(
                Q.reply_context, job.phone_number_id, job.contact_id, job.tenant_id
            )
            burst = list(await conn.fetch(Q.burst_messages, job.id, job.tenant_id))
        if ctx is None or not ctx["registered"]:
            return Plan("skipped: the number is no longer this tenant's")
        if not ctx["tenant_active"]:
            return Plan("skipped: tenant inactive")
        if not burst:
            return Plan("skipped: nothing to answer")
        config = from_row(ctx if ctx["configured"] else None, enabled=ctx["bot_enabled"])
        from_owner = (ctx["wa_id"] or "") in config.owner_phones
        commands = [
            c
            for m in burst
            if m["type"] == "text"
            and (c := parse_command(m["text"], from_owner=from_owner)) is not None
        ]
        provider = self._provider(ctx)
        if commands:
            self._mark_read(provider, burst, ctx["wa_id"] or ctx["user_id"])
            return await self._commands(job, ctx, config, commands)
        if not config.enabled:
            return Plan("skipped: bot disabled")
        if ctx["bot_paused"]:
            return Plan("skipped: conversation paused")
        if not window_state(ctx["last_inbound_at"], ctx["window_closed_at"]).open:
            return Plan("skipped: customer-service window closed")
        plan = Plan("answered")
        try:
            key = bot_key(self._box, job.phone_number_id, ctx["api_key_enc"])
        except SecretUnreadable:
            plan.outcome = "skipped: the bot's model key cannot be opened"
            plan.audits.append(
                ("bot.key_unreadable", "error", {"phone_number_id": job.phone_number_id})
            )
            return plan
        endpoint, model = model_endpoint(self._settings, config, key)
        if endpoint is None:
            plan.outcome = "skipped: no model configured"
            plan.audits.append(
                ("bot.no_model", "warning", {"phone_number_id": job.phone_number_id})
            )
            return plan
        cost = answer_cost(config, key)
        if ctx["credits_balance"] < cost:
            plan.outcome = "skipped: out of credits"
            plan.audits.append(
                (
                    "bot.out_of_credits",
                    "warning",
                    {"phone_number_id": job.phone_number_id, "reply_id": job.id},
                )
            )
            if config.out_of_credits_text:
                plan.text(config.out_of_credits_text)
            return plan
        understood = await self._understand(job, burst, plan)
        if understood is None:
            return None  # its media is still downloading: marked read when it is answered
        self._mark_read(provider, burst, ctx["wa_id"] or ctx["user_id"])
        unreadable, turn = understood
        if unreadable and self._reader is None:
            plan.text(config.media_unavailable_text or NO_MEDIA_TEXT)  # once per burst
            if not turn.strip():
                plan.outcome = "answered: media not understood"
                return plan
        turns = await conversation(
            self._pool, job.contact_id, job.tenant_id, job.id, config, Turn("user", turn)
        )
        instructions = instructions_for(config, ctx, datetime.now(UTC))
        assert self._models is not None
        tools = await self._toolbox(job, config, ctx, plan, provider)
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
                tools=tools,
            )
        except ModelFailed as exc:
            plan.outcome = f"model failed: {exc}"
            plan.audits.append(
                (
                    "bot.model_failed",
                    "error",
                    {"phone_number_id": job.phone_number_id, "reply_id": job.id, "error": str(exc)},
                )
            )
            if config.fallback_text:
                plan.text(config.fallback_text)
            return plan
        if plan.files is not None:
            # Before the text, which the model wrote knowing the files were on their way.
            plan.parts.extend(plan.files.parts)
        plan.usage.append(("reply", answer))
        if not answer.text:
            plan.outcome = "answered: the model said nothing"
            return plan
        plan.debit = cost
        if config.extract_fields:
            plan.extraction = Extraction(
                job.tenant_id,
                job.phone_number_id,
                job.contact_id,
                job.id,
                endpoint,
                model,
                config.api_for(model),
                config.reasoning_effort,
                config.extract_fields,
                ctx["fields"],
                (*turns, Turn("assistant", answer.text)),
                burst[-1]["id"],
                burst[-1]["created_at"],
            )
        if config.voice_replies and _sent_voice(burst):
            voice = await self._voice(endpoint, provider, answer.text, plan)
            if voice is not None:
                plan.parts.append(("audio", {"id": voice}, answer.text))
                return plan
        plan.text(answer.text)
        return plan

    async def _toolbox(
        self,
        job: Job,
        config: BotConfig,
        ctx: Mapping[str, Any],
        plan: Plan,
        provider: Provider | None,
    ) -> ToolBox | None:
        """The number's tools for this reply, `send_file` among them when it has files; their
        calls are logged with the job's finish (or without it: a call made is a call made,
        whatever the answer became)."""
        plan.files = await file_sender(self._pool, provider, job.tenant_id, job.phone_number_id)
        tools, secrets = config.tools, {}
        if tools:
            try:
                secrets = open_secrets(self._box, job.phone_number_id, ctx["tool_secrets_enc"])
            except SecretUnreadable:
                plan.audits.append(
                    (
                        "bot.tool_secrets_unreadable",
                        "error",
                        {"phone_number_id": job.phone_number_id},
                    )
                )
                tools = ()
        if not tools and plan.files is None:
            return None
        built_ins = [plan.files] if plan.files is not None else []
        box = ToolBox(self._tenant_http, tools, secrets, built_ins)
        plan.tools = box
        return box

    def _provider(self, ctx: Mapping[str, Any]) -> Provider | None:
        if ctx["access_token_enc"] is None or ctx["flagged_reason"] is not None:
            return None
        try:
            return self._provider_for(ctx)
        except SecretUnreadable:
            return None

    def _mark_read(
        self, provider: Provider | None, burst: Sequence[asyncpg.Record], chat: str | None
    ) -> None:
        """Read ticks and the typing indicator at once, beside the rest of the job."""
        wamid = next((m["wamid"] for m in reversed(burst) if m["wamid"]), None)
        if provider is None or wamid is None or not provider.capabilities.read_receipts:
            return

        async def mark() -> None:
            try:
                typing = provider.capabilities.typing_indicator
                await provider.mark_read(wamid, typing=typing, chat=chat)
            except Exception as exc:  # a tick is worth no failure of the reply
                logger.info("mark read failed", extra={"error": type(exc).__name__})

        if self._marks.free:
            self._marks.start(mark())

    async def _understand(
        self, job: Job, burst: Sequence[asyncpg.Record], plan: Plan
    ) -> tuple[bool, str] | None:
        """The burst as one user turn, its media read (and saved) on the way; whether some media
        could not be read. None: media still downloading, the job was postponed."""
        waiting = datetime.now(UTC) - job.created_at < timedelta(seconds=MEDIA_WAIT_SECONDS)
        if waiting and any(
            m["type"] in MEDIA_KINDS and m["media_text"] is None and m["media_state"] == "pending"
            for m in burst
        ):
            async with self._pool.acquire() as conn:
                postponed = await conn.execute(
                    Q.postpone_reply, job.id, job.attempts, MEDIA_RETRY_SECONDS
                )
            if postponed.endswith(" 1"):
                return None
        lines: list[str] = []
        unreadable = False
        for m in burst:
            text = m["text"]
            if m["type"] in MEDIA_KINDS:
                label = MEDIA_LABELS.get(m["type"], m["type"])
                seen = m["media_text"] or await self._read_media(job, m)
                if seen is None:
                    unreadable = True
                    lines.append(
                        f"[{label} that could not be opened]" + (f" {text}" if text else "")
                    )
                else:
                    lines.append(f"[{label}] {seen}" + (f"\n{text}" if text else ""))
            elif text:
                lines.append(text)
            else:
                lines.append(f"[{m['type']}]")
        turn = "\n".join(lines)
        if unreadable and not any(m["text"] for m in burst if m["type"] not in MEDIA_KINDS):
            return True, ""
        return unreadable, turn

    async def _read_media(self, job: Job, message: asyncpg.Record) -> str | None:
        if self._reader is None or message["media_state"] != "stored":
            return None
        try:
            seen = await self._reader.read(
                message["type"], bytes(message["media_content"]), message["media_mime"] or ""
            )
        except ModelFailed as exc:
            logger.warning("media not understood", extra={"reply_id": job.id, "error": str(exc)})
            return None
        if seen is None:
            return None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(Q.save_media_text, message["id"], seen.text)
            await record_tokens(
                conn,
                job.tenant_id,
                job.phone_number_id,
                seen.answer.model,
                seen.feature,
                seen.answer.input_tokens,
                seen.answer.output_tokens,
            )
        return seen.text

    async def _voice(
        self, endpoint: Endpoint, provider: Provider | None, text: str, plan: Plan
    ) -> str | None:
        """The answer spoken and uploaded; its media id, or None to answer in text."""
        if provider is None or self._models is None:
            return None
        try:
            audio = await self._models.speech(endpoint, text)
            media_id = await provider.upload_media(audio, "audio/ogg", "reply.ogg")
        except Exception as exc:  # the text answer still goes out
            logger.warning("voice reply failed", extra={"error": type(exc).__name__})
            return None
        plan.usage.append(("speech", Answer("", "tts", len(text) // 4 + 1, 0)))
        return media_id

    async def _commands(
        self, job: Job, ctx: Mapping[str, Any], config: BotConfig, commands: Sequence[Command]
    ) -> Plan:
        plan = Plan("commands: " + ", ".join(c.kind for c in commands), commands=True)
        number, tenant = job.phone_number_id, job.tenant_id
        for command in commands:
            kind = command.kind
            if kind == "pause":
                plan.effects.append(_pause(job.contact_id, tenant, "contact"))
                plan.text(confirmation(command))
            elif kind == "resume":
                if ctx["paused_by"] in (None, "contact"):
                    plan.effects.append(_resume(job.contact_id, tenant))
                    plan.text(confirmation(command))
                else:  # the business paused it (or a person took over): theirs to lift
                    plan.text(
                        confirmation(Command("status", language=command.language), paused=True)
                    )
            elif kind == "status":
                plan.text(confirmation(command, paused=bool(ctx["bot_paused"])))
            elif kind in ("pause_contact", "resume_contact"):
                async with self._pool.acquire() as conn:
                    target = await conn.fetchval(
                        Q.find_tenant_contact, tenant, number, command.target
                    )
                if target is not None:
                    plan.effects.append(
                        _pause(target, tenant, "owner")
                        if kind == "pause_contact"
                        else _resume(target, tenant)
                    )
                plan.text(confirmation(command, found=target is not None))
            elif kind in ("pause_all", "resume_all"):
                async with self._pool.acquire() as conn:
                    count = await conn.fetchval(Q.number_conversations, number, tenant)
                plan.effects.append(_switch(number, tenant, on=kind == "resume_all"))
                plan.text(confirmation(command, count=int(count)))
            else:  # owner_status
                async with self._pool.acquire() as conn:
                    status = await conn.fetchrow(Q.owner_status, number, tenant, config.timezone)
                plan.text(
                    confirmation(
                        command,
                        paused=list(status["paused"]),
                        today_inbound=int(status["inbound"]),
                        today_replies=int(status["replies"]),
                        bot_enabled=config.enabled,
                    )
                )
        plan.audits.append(
            (
                "bot.command",
                "info",
                {"phone_number_id": number, "commands": [c.kind for c in commands]},
            )
        )
        return plan

    # Finishing ------------------------------------------------------------------------------
    async def _finish(self, job: Job, plan: Plan) -> Plan | None:
        """Commit the plan; the plan as committed (a gate may have turned it into a skip), or
        None when the job's lease was lost."""
        async with self._pool.acquire() as conn, conn.transaction():
            gates = await conn.fetchrow(Q.lock_reply, job.id, job.attempts)
            if gates is None:
                logger.info("reply lease lost", extra={"reply_id": job.id})
                return None
            if not plan.commands and plan.parts and not gates["open"]:
                # Paused, switched off or deactivated while the model thought: a person may be
                # answering now, and the bot must not talk over them.
                plan = Plan("skipped: paused during the answer", usage=plan.usage)
            if plan.debit:
                balance = await debit_reply(
                    conn, job.tenant_id, job.phone_number_id, job.id, plan.debit
                )
                if balance is None:  # spent meanwhile by another reply
                    plan = Plan("skipped: out of credits", usage=plan.usage)
            for effect in plan.effects:
                await effect(conn)
            recipient = await conn.fetchval(Q.reply_recipient, job.contact_id, job.tenant_id)
            queued: list[dict[str, Any]] = []
            for i, (kind, body, text) in enumerate(plan.parts):
                composed = compose({"to": recipient, "type": kind, kind: body})
                row = await conn.fetchrow(
                    Q.enqueue_message,
                    job.tenant_id,
                    job.phone_number_id,
                    job.contact_id,
                    composed.kind,
                    text,
                    composed.body,
                    composed.body,
                    composed.recipient,
                    f"reply:{job.id}:{i}",
                    None,  # no fallback template: a reply goes out inside the window or not at all
                    None,
                    "bot",
                    job.id,
                )
                if row is not None:
                    queued.append({"id": str(row["id"]), "type": composed.kind, "text": text})
            if queued:
                await conn.execute(Q.ensure_pacing, job.phone_number_id)
                await conn.execute(Q.notify_outbox, job.phone_number_id)
                if not plan.commands:  # our message: the number's follow-ups count from it
                    await schedule_follow_ups(
                        conn,
                        job.tenant_id,
                        job.phone_number_id,
                        job.contact_id,
                        now=datetime.now(UTC),
                    )
                await enqueue_forward(
                    conn,
                    job.tenant_id,
                    BOT_REPLY,
                    {
                        "phone_number_id": job.phone_number_id,
                        "to": recipient,
                        "reply_id": job.id,
                        "outcome": plan.outcome,
                        "messages": queued,
                    },
                    f"reply:{job.id}",
                )
            await record_accounts(conn, job.tenant_id, job.phone_number_id, plan.usage, plan.audits)
            state = "failed" if plan.outcome.startswith("failed") else "done"
            finished = await conn.fetchrow(
                Q.finish_reply, job.id, job.attempts, state, plan.outcome[:500]
            )
            if finished is not None and finished["more"]:
                await conn.execute(Q.notify_replies)
        logger.info(
            "reply finished",
            extra={"reply_id": job.id, "outcome": plan.outcome, "messages": len(plan.parts)},
        )
        return plan


async def log_tool_calls(conn: asyncpg.Connection, job: Job, calls: Sequence[ToolCall]) -> None:
    await conn.execute(
        Q.insert_tool_calls,
        job.tenant_id,
        job.phone_number_id,
        job.contact_id,
        job.id,
        [storable(c.name[:64]) for c in calls],
        [_arguments_text(c.arguments) for c in calls],
        [c.status for c in calls],
        [c.error for c in calls],
        [c.duration_ms for c in calls],
    )


def _arguments_text(arguments: Mapping[str, Any]) -> str:
    if not depth_within(arguments):
        return json.dumps({"omitted": "arguments nested too deep"})
    text = json.dumps(storable(arguments), ensure_ascii=False)
    return text if len(text) <= 16_384 else json.dumps({"omitted": "arguments over 16 KB"})


def _sent_voice(burst: Sequence[asyncpg.Record]) -> bool:
    for m in burst:
        payload = m["payload"] or {}
        audio = payload.get("audio") if isinstance(payload, Mapping) else None
        if m["type"] in ("audio", "voice") and isinstance(audio, Mapping) and audio.get("voice"):
            return True
    return False


def _pause(
    contact_id: int, tenant: UUID, by: str
) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
    return lambda conn: conn.execute(Q.pause_conversation, contact_id, tenant, None, by)


def _resume(contact_id: int, tenant: UUID) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
    return lambda conn: conn.execute(Q.resume_conversation, contact_id, tenant)


def _switch(
    number: str, tenant: UUID, *, on: bool
) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
    async def switch(conn: asyncpg.Connection) -> None:
        await conn.execute(Q.set_bot_enabled, number, tenant, on)
        if on:
            await conn.fetchval(Q.resume_all_contacts, number, tenant)

    return switch


def answer_cost(config: BotConfig, key: str | None) -> int:
    """The credits an answer costs: the platform's model is never free (a tenant prices its
    own endpoint at 0 if it likes)."""
    return config.credits_per_reply if key is not None else max(1, config.credits_per_reply)


def instructions_for(config: BotConfig, ctx: Mapping[str, Any], now: datetime) -> str:
    """The number's instructions filled in for this conversation (a reply_context row)."""
    return render_instructions(
        config.instructions,
        now=now,
        timezone=config.timezone,
        contact_name=ctx["name"],
        business_name=ctx["verified_name"] or ctx["tenant_name"],
        contact_fields=contact_fields_text(ctx["fields"], ctx["notes"]),
    )


async def conversation(
    pool: asyncpg.Pool,
    contact_id: int,
    tenant_id: UUID,
    before_reply: int,
    config: BotConfig,
    last: Turn,
) -> list[Turn]:
    """The conversation from the database (never a purged turn, never reply job
    `before_reply`'s or a later one's messages) with `last` as its newest turn, trimmed to
    the model's budget."""
    rows: list[asyncpg.Record] = []
    if config.history_turns:
        async with pool.acquire() as conn:
            rows = list(
                await conn.fetch(
                    Q.conversation_history,
                    contact_id,
                    tenant_id,
                    before_reply,
                    config.history_turns,
                )
            )
    turns = [
        Turn("user" if r["direction"] == "in" else "assistant", r["text"]) for r in reversed(rows)
    ]
    turns.append(last)
    return trim_history(turns, max_turns=config.history_turns + 1, token_budget=HISTORY_TOKENS)


async def record_accounts(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    phone_number_id: str,
    usage: Sequence[tuple[Feature, Answer]],
    audits: Sequence[tuple[str, str, dict[str, Any]]],
) -> None:
    """The model tokens and audit rows of an assistant's job, in its finishing transaction."""
    for feature, answer in usage:
        await record_tokens(
            conn,
            tenant_id,
            phone_number_id,
            answer.model,
            feature,
            answer.input_tokens,
            answer.output_tokens,
        )
    for action, severity, detail in audits:
        await audit.record(
            conn,
            action,
            tenant_id=tenant_id,
            actor=f"bot:{phone_number_id}",
            severity=severity,
            detail=detail,
        )


def model_endpoint(
    settings: Settings, config: BotConfig, key: str | None
) -> tuple[Endpoint | None, str]:
    """Where a number's assistant talks to, and which model: the tenant's endpoint, or the
    platform's with the tenant's key or the platform's (None: no model configured)."""
    model = config.model or settings.ai_model
    if config.base_url is not None:
        return Endpoint(config.base_url, key or "not-needed", tenant_owned=True), model
    if key is not None:
        return Endpoint(settings.openai_base_url, key, tenant_owned=False), model
    if settings.openai_api_key:
        platform = Endpoint(settings.openai_base_url, settings.openai_api_key, tenant_owned=False)
        return platform, model
    return None, model


def bot_key(box: SecretBox, phone_number_id: str, sealed: bytes | None) -> str | None:
    """A tenant's model key, opened only when its assistant is about to call."""
    if sealed is None:
        return None
    return box.open(sealed, context=BOT_API_KEY.context(phone_number_id))
