"""Follow-ups and reminders, end to end: the sandbox Meta and model fakes on loopback, the app's
own worker answering and sending, and the follow-up consumer run in-process on a clock the
test sets (so "two hours later, at 09:00 in Bogota" takes no time). The last test kills a real
`wa-cloud worker` while it writes a follow-up and checks the customer gets it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from tests.conftest import (
    NUMBER_A,
    WABA,
    Meta,
    configure_bot,
    give_credits,
    meta_running,
    model_requests,
    replies_done,
    sent_to_customer,
    start_worker,
)
from wa_cloud.ai.followup_rules import FollowUpRule, follow_up_due, into_hours
from wa_cloud.ai.followups import FOLLOW_UP_NOTE, FollowUpSender
from wa_cloud.config import Settings
from wa_cloud.resources import open_resources

CUSTOMER = "16505551234"
BOGOTA = ZoneInfo("America/Bogota")  # UTC-5 all year
TEMPLATE = {"name": "still_here", "language": {"code": "en_US"}}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def follow_up_sender(meta: Meta, clock: Clock) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """The follow-up consumer on `clock`; the callable handles what is due and returns how
    many rows it handled (a row put back to wait for its hours is not counted)."""
    async with open_resources(meta.app.settings, pool_size=4) as resources:
        sender = FollowUpSender.from_resources(resources, clock)
        claims = "SELECT coalesce(sum(claims), 0) FROM follow_ups"
        async with sender.running():

            async def run_due() -> int:
                before = await resources.pool.fetchval(claims)
                while await sender.step() is None:
                    await sender.jobs.join()
                return int(await resources.pool.fetchval(claims) - before)

            yield run_due


async def rows(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM follow_ups ORDER BY id"))


async def sent_follow_ups(db: asyncpg.Connection) -> list[asyncpg.Record]:
    """Follow-up messages in the outbox, once each reached Meta."""
    async with asyncio.timeout(15):
        while True:
            found = await db.fetch(
                "SELECT * FROM messages WHERE idempotency_key LIKE 'follow-up:%'"
                " ORDER BY created_at"
            )
            if all(m["status"] not in ("queued", "sending") for m in found):
                return list(found)
            await asyncio.sleep(0.05)


async def ready(meta: Meta, db: asyncpg.Connection, **config: Any) -> None:
    """The assistant on, with credits and `config`."""
    await configure_bot(meta, **config)
    await give_credits(db, meta)


async def answered(meta: Meta, db: asyncpg.Connection, text: str = "hola", n: int = 1) -> None:
    """The customer writes and the assistant's answer (the n-th) reaches Meta."""
    await meta.customer_writes(text, sender=CUSTOMER)
    await replies_done(db, n)
    await sent_to_customer(meta, n)


async def seed_template(meta: Meta) -> None:
    seeded = await meta.sandbox.post(
        "/_sandbox/templates",
        json={
            "waba_id": WABA,
            "name": "still_here",
            "language": "en_US",
            "body": "We are still here if you need anything.",
            "category": "UTILITY",
        },
    )
    assert seeded.status_code == 201, seeded.text


# The schedule, pure ---------------------------------------------------------------------------
def test_a_follow_up_waits_for_its_hours_in_the_numbers_time_zone() -> None:
    rule = FollowUpRule(after_minutes=120, between=(time(9, 0), time(20, 0)))
    sent = datetime(2027, 3, 1, 19, 30, tzinfo=BOGOTA)  # due 21:30: after hours
    assert follow_up_due(sent, rule, BOGOTA) == datetime(2027, 3, 2, 9, 0, tzinfo=BOGOTA)
    early = datetime(2027, 3, 1, 5, 0, tzinfo=BOGOTA)  # due 07:00: before hours
    assert follow_up_due(early, rule, BOGOTA) == datetime(2027, 3, 1, 9, 0, tzinfo=BOGOTA)
    inside = datetime(2027, 3, 1, 10, 0, tzinfo=BOGOTA)
    assert follow_up_due(inside, rule, BOGOTA) == datetime(2027, 3, 1, 12, 0, tzinfo=BOGOTA)
    # A start after the end spans midnight: 22:00 to 06:00.
    night = (time(22, 0), time(6, 0))
    assert into_hours(datetime(2027, 3, 1, 23, 0, tzinfo=BOGOTA), night, BOGOTA) == datetime(
        2027, 3, 1, 23, 0, tzinfo=BOGOTA
    )
    assert into_hours(datetime(2027, 3, 1, 12, 0, tzinfo=BOGOTA), night, BOGOTA) == datetime(
        2027, 3, 1, 22, 0, tzinfo=BOGOTA
    )
    # DST: New York's clocks skip 02:00-03:00 on 2027-03-14; an opening at 02:30 that day
    # is 03:30 EDT, and the next day's is 02:30 again.
    york = ZoneInfo("America/New_York")
    hours = (time(2, 30), time(4, 0))
    skipped = into_hours(datetime(2027, 3, 14, 1, 0, tzinfo=york), hours, york)
    assert skipped == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)  # 03:30 EDT
    after = into_hours(datetime(2027, 3, 14, 12, 0, tzinfo=york), hours, york)
    assert after.astimezone(york).hour == 2 and after.astimezone(york).minute == 30


# Firing ---------------------------------------------------------------------------------------
async def test_a_follow_up_fires_once_when_the_numbers_hours_open(
    bot: Meta, db: asyncpg.Connection
) -> None:
    # Hours that open four hours from now (local), so the rule's 1 minute has to wait for them.
    opens = (datetime.now(BOGOTA) + timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    closes = opens + timedelta(hours=2)
    await configure_bot(
        bot,
        timezone="America/Bogota",
        follow_ups=[
            {
                "after_minutes": 1,
                "max": 1,
                "between": [f"{opens:%H:%M}", f"{closes:%H:%M}"],
                "text": "¿Sigues ahí? Aquí estamos.",
            }
        ],
    )
    await give_credits(db, bot)
    await answered(bot, db)
    (scheduled,) = await rows(db)
    assert scheduled["state"] == "scheduled" and scheduled["kind"] == "follow_up"
    assert scheduled["due_at"] == opens

    clock = Clock(opens - timedelta(minutes=1))
    async with follow_up_sender(bot, clock) as run_due:
        assert await run_due() == 0  # 08:59 of those hours: not yet
        clock.now = opens
        assert await run_due() == 1
        clock.now = opens + timedelta(hours=1)
        assert await run_due() == 0  # max 1: nothing more
    (sent,) = await rows(db)
    assert sent["state"] == "sent" and sent["attempt"] == 1 and sent["message_id"] is not None
    bodies = await sent_to_customer(bot, 2)
    assert bodies[-1]["text"] == {"body": "¿Sigues ahí? Aquí estamos."}
    (message,) = await sent_follow_ups(db)
    assert message["id"] == sent["message_id"] and message["author"] == "bot"
    listed = await bot.app.client.get(
        f"/v1/contacts/{CUSTOMER}/follow-ups",
        params={"phone_number_id": NUMBER_A},
        headers=bot.tenant(),
    )
    assert listed.status_code == 200, listed.text
    (shown,) = listed.json()["data"]
    assert shown["state"] == "sent" and shown["kind"] == "follow_up"
    assert shown["message_id"] == str(sent["message_id"]) and shown["max"] == 1


async def test_an_inbound_message_cancels_the_pending_follow_ups(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await ready(bot, db, follow_ups=[{"after_minutes": 60, "text": "Still there?"}])
    await answered(bot, db, "hola")
    (first,) = await rows(db)
    await answered(bot, db, "one more thing", n=2)
    cancelled, pending = await rows(db)
    assert cancelled["id"] == first["id"]
    assert cancelled["state"] == "cancelled" and cancelled["reason"] == "the customer wrote"
    assert pending["state"] == "scheduled"  # counted from the newer answer: no pile-up

    clock = Clock(pending["due_at"])
    async with follow_up_sender(bot, clock) as run_due:
        assert await run_due() == 1
    assert [m["text"] for m in await sent_follow_ups(db)] == ["Still there?"]
    assert [r["state"] for r in await rows(db)] == ["cancelled", "sent"]


async def test_outside_the_window_only_the_rules_template_goes(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(bot)
    day_later = 25 * 60  # the 24-hour window has closed by then
    await configure_bot(
        bot,
        follow_ups=[
            {"after_minutes": day_later, "text": "Still there?"},
            {"after_minutes": day_later, "template": TEMPLATE},
        ],
    )
    await give_credits(db, bot)
    await answered(bot, db)
    texts, templates = await rows(db)
    clock = Clock(max(texts["due_at"], templates["due_at"]))
    async with follow_up_sender(bot, clock) as run_due:
        assert await run_due() == 2
    texts, templates = await rows(db)
    assert texts["state"] == "skipped"
    assert texts["reason"] == "outside the customer-service window and no template"
    assert templates["state"] == "sent" and templates["template"] == TEMPLATE
    await sent_follow_ups(db)
    bodies = await sent_to_customer(bot, 2)
    assert len(bodies) == 2
    assert bodies[-1] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "template",
        "template": TEMPLATE,
    }


async def test_a_paused_conversation_gets_no_follow_up(bot: Meta, db: asyncpg.Connection) -> None:
    await ready(bot, db, follow_ups=[{"after_minutes": 30, "text": "Still there?"}])
    await answered(bot, db)
    paused = await bot.app.client.post(
        f"/v1/contacts/{CUSTOMER}/pause",
        json={"phone_number_id": NUMBER_A},
        headers=bot.tenant(),
    )
    assert paused.status_code == 200, paused.text
    (row,) = await rows(db)
    async with follow_up_sender(bot, Clock(row["due_at"])) as run_due:
        assert await run_due() == 1
    (row,) = await rows(db)
    assert row["state"] == "skipped" and row["reason"] == "conversation paused"
    assert await sent_follow_ups(db) == []
    assert len(await bot.sent_bodies()) == 1  # the answer only


async def test_a_model_written_follow_up_comes_back_at_most_max_times(
    bot: Meta, db: asyncpg.Connection
) -> None:
    scripted = await bot.sandbox.post(
        "/_models/script",
        json={"replies": ["Our blue model is 40 USD.", "Shall I reserve one?", "Last call!"]},
    )
    assert scripted.status_code == 200, scripted.text
    await configure_bot(
        bot,
        model="gpt-4o-mini",
        credits_per_reply=3,
        follow_ups=[{"after_minutes": 60, "max": 2}],
        instructions="You sell bikes. What we know: {{contact_fields}}",
    )
    await give_credits(db, bot, 100)
    await answered(bot, db, "how much is the blue one?")
    noted = await bot.app.client.patch(
        f"/v1/contacts/{CUSTOMER}",
        params={"phone_number_id": NUMBER_A},
        json={"fields": {"city": "Bogotá"}},
        headers=bot.tenant(),
    )
    assert noted.status_code == 200, noted.text
    (first,) = await rows(db)
    clock = Clock(first["due_at"])
    async with follow_up_sender(bot, clock) as run_due:
        assert await run_due() == 1
        second = (await rows(db))[-1]
        assert second["state"] == "scheduled" and second["attempt"] == 2
        assert second["due_at"] == clock.now + timedelta(minutes=60)
        clock.now = second["due_at"] - timedelta(seconds=1)
        assert await run_due() == 0
        clock.now = second["due_at"]
        assert await run_due() == 1
        clock.now += timedelta(days=2)
        assert await run_due() == 0
    assert [(r["attempt"], r["state"]) for r in await rows(db)] == [(1, "sent"), (2, "sent")]
    assert [m["text"] for m in await sent_follow_ups(db)] == ["Shall I reserve one?", "Last call!"]
    # Written from the conversation, with the brief as the last turn.
    request = (await model_requests(bot))[1]
    text = str(request["body"])
    assert "how much is the blue one?" in text and "Our blue model is 40 USD." in text
    assert FOLLOW_UP_NOTE.split("{")[0] in text
    # The instructions as a reply's, the contact's fields filled in.
    system = request["body"]["messages"][0]
    assert system["role"] == "system"
    assert system["content"] == 'You sell bikes. What we know: - city: "Bogotá"'
    # Each costs what a reply does, its tokens counted as follow_up.
    reasons = await db.fetch("SELECT reason, amount FROM credit_ledger ORDER BY id")
    assert [(r["reason"], r["amount"]) for r in reasons] == [
        ("reply", -3),
        ("follow_up", -3),
        ("follow_up", -3),
    ]
    calls = await db.fetchval("SELECT calls FROM token_usage WHERE feature = 'follow_up'")
    assert calls == 2


# Reminders ------------------------------------------------------------------------------------
async def test_a_reminder_goes_at_its_time_and_an_inbound_message_keeps_it(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await ready(bot, db)
    await answered(bot, db)  # the window is open
    at = (datetime.now(BOGOTA) + timedelta(hours=2)).replace(microsecond=0)
    created = await bot.app.client.post(
        f"/v1/contacts/{CUSTOMER}/reminders",
        json={"phone_number_id": NUMBER_A, "at": at.isoformat(), "text": "Your table is at 8."},
        headers=bot.tenant(),
    )
    assert created.status_code == 201, created.text
    reminder = created.json()
    assert reminder["kind"] == "reminder" and reminder["state"] == "scheduled"
    assert datetime.fromisoformat(reminder["due_at"]) == at
    await answered(bot, db, "thanks!", n=2)  # not a follow-up: it stays
    (row,) = await rows(db)
    assert row["state"] == "scheduled"

    clock = Clock(at - timedelta(minutes=1))
    async with follow_up_sender(bot, clock) as run_due:
        assert await run_due() == 0
        clock.now = at
        assert await run_due() == 1
    (row,) = await rows(db)
    assert row["state"] == "sent"
    (message,) = await sent_follow_ups(db)
    assert message["text"] == "Your table is at 8." and message["author"] == "human"
    assert (await sent_to_customer(bot, 3))[-1]["text"] == {"body": "Your table is at 8."}


async def test_a_text_reminder_past_the_window_is_skipped_a_template_one_goes(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(bot)
    await ready(bot, db)
    await answered(bot, db)
    at = datetime.now(UTC) + timedelta(hours=30)
    for content in ({"text": "See you tomorrow"}, {"template": TEMPLATE}):
        created = await bot.app.client.post(
            f"/v1/contacts/{CUSTOMER}/reminders",
            json={"phone_number_id": NUMBER_A, "at": at.isoformat(), **content},
            headers=bot.tenant(),
        )
        assert created.status_code == 201, created.text
    async with follow_up_sender(bot, Clock(at)) as run_due:
        assert await run_due() == 2
    text, template = await rows(db)
    assert text["state"] == "skipped" and "outside the customer-service window" in text["reason"]
    assert template["state"] == "sent"
    (message,) = await sent_follow_ups(db)
    assert message["type"] == "template"


async def test_reminders_are_checked_and_scoped_to_the_caller(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(bot)
    await ready(bot, db)
    await answered(bot, db)
    path = f"/v1/contacts/{CUSTOMER}/reminders"
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    wrong: list[dict[str, Any]] = [
        {"at": "2020-01-01T09:00:00Z", "text": "past"},
        {"at": "2030-01-01T09:00:00", "text": "no offset"},
        {"at": (datetime.now(UTC) + timedelta(days=400)).isoformat(), "text": "too far"},
        {"at": soon, "text": "both", "template": TEMPLATE},
        {"at": soon},
        {"at": soon, "template": {"name": "no_such_template", "language": {"code": "en_US"}}},
    ]
    for body in wrong:
        answer = await bot.app.client.post(
            path, json={"phone_number_id": NUMBER_A, **body}, headers=bot.tenant()
        )
        assert answer.status_code == 422, (body, answer.text)
    created = await bot.app.client.post(
        path, json={"phone_number_id": NUMBER_A, "at": soon, "text": "ok"}, headers=bot.tenant()
    )
    assert created.status_code == 201, created.text
    reminder_id = created.json()["id"]

    other = await bot.app.create_tenant("Other Co")
    theirs = {"authorization": f"Bearer {other['api_key']}"}
    one = f"/v1/contacts/{CUSTOMER}/follow-ups/{reminder_id}"
    answers = [
        await bot.app.client.get(
            f"/v1/contacts/{CUSTOMER}/follow-ups",
            params={"phone_number_id": NUMBER_A},
            headers=theirs,
        ),
        await bot.app.client.post(
            path, json={"phone_number_id": NUMBER_A, "at": soon, "text": "x"}, headers=theirs
        ),
        await bot.app.client.delete(one, params={"phone_number_id": NUMBER_A}, headers=theirs),
        await bot.app.client.get(
            "/v1/contacts/15550000000/follow-ups",
            params={"phone_number_id": NUMBER_A},
            headers=bot.tenant(),
        ),
    ]
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert (await rows(db))[0]["state"] == "scheduled"

    cancelled = await bot.app.client.delete(
        one, params={"phone_number_id": NUMBER_A}, headers=bot.tenant()
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    again = await bot.app.client.delete(
        one, params={"phone_number_id": NUMBER_A}, headers=bot.tenant()
    )
    assert again.status_code == 409, again.text


# Exactly once ---------------------------------------------------------------------------------
async def test_a_worker_killed_while_writing_a_follow_up_sends_it_once(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, run_worker=False, models=True) as meta:
        await configure_bot(meta, model="gpt-4o-mini", follow_ups=[{"after_minutes": 0.05}])
        await give_credits(db, meta)
        first = start_worker(meta.app.settings)
        try:
            await meta.customer_writes("hola", sender=CUSTOMER)
            await sent_to_customer(meta, 1)
            # The model now takes its time: the follow-up is being written when the kill comes.
            slow = await meta.sandbox.post("/_models/script", json={"delay_seconds": 4})
            assert slow.status_code == 200, slow.text
            async with asyncio.timeout(20):
                while await db.fetchval("SELECT state FROM follow_ups") != "sending":
                    await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        await meta.sandbox.post("/_models/script", json={"delay_seconds": 0})
        second = start_worker(meta.app.settings)
        try:
            await sent_to_customer(meta, 2, timeout=30)
            (row,) = await rows(db)
            assert row["state"] == "sent" and row["claims"] == 2
            await asyncio.sleep(2)  # anything sent twice would have arrived by now
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(15)
        assert len(await meta.sent_bodies()) == 2
        assert len(await sent_follow_ups(db)) == 1
        follow_up_debits = await db.fetchval(
            "SELECT count(*) FROM credit_ledger WHERE reason = 'follow_up'"
        )
        assert follow_up_debits == 1
