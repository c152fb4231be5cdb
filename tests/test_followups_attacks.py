"""Follow-ups and reminders attacked: by a second tenant, by a number that changes hands, by a
customer who says STOP, by a flood of reminders, by two senders racing for one row, and by the
calendar (time zones that move, DST gaps, dates Python cannot hold).

Everything runs end to end on real PostgreSQL with the sandbox Meta and its model fakes on
loopback; the follow-up consumer runs in-process on a clock the test sets (tests/test_followups.py
`follow_up_sender`), so "two hours later" takes no time. The app's own worker runs its own
sender on the real clock, so every row here is due in the real future.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Meta, configure_bot, give_credits
from tests.test_followups import (
    CUSTOMER,
    TEMPLATE,
    Clock,
    answered,
    follow_up_sender,
    ready,
    rows,
    seed_template,
    sent_follow_ups,
)
from wa_cloud.ai.followup_rules import into_hours, within
from wa_cloud.ai.followups import MAX_PER_TENANT, FollowUpSender
from wa_cloud.api.followups import MAX_WAITING_REMINDERS
from wa_cloud.resources import open_resources

TOKYO = ZoneInfo("Asia/Tokyo")
OTHER_WABA = "102290129340399"  # the second tenant's own


# --- helpers ------------------------------------------------------------------------------------


async def remind(
    meta: Meta, at: datetime | str, headers: dict[str, str] | None = None, **content: Any
) -> httpx.Response:
    return await meta.app.client.post(
        f"/v1/contacts/{CUSTOMER}/reminders",
        json={
            "phone_number_id": NUMBER_A,
            "at": at if isinstance(at, str) else at.isoformat(),
            **(content or {"text": "Your table is at 8."}),
        },
        headers=headers or meta.tenant(),
    )


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])


async def remove_number(meta: Meta, api_key: str) -> None:
    removed = await meta.app.client.delete(
        f"/v1/numbers/{NUMBER_A}", headers={"authorization": f"Bearer {api_key}"}
    )
    assert removed.status_code in (200, 204), removed.text


async def register_number_a(meta: Meta, api_key: str, token: str) -> None:
    """Number A registered (again) by the tenant of `api_key`, with Meta's new token for it."""
    await meta.app.seed_number(NUMBER_A, token=token)
    added = await meta.app.client.post(
        "/v1/numbers",
        json={"phone_number_id": NUMBER_A, "waba_id": WABA, "access_token": token},
        headers={"authorization": f"Bearer {api_key}"},
    )
    assert added.status_code == 201, added.text


async def contact_on_b(meta: Meta, db: asyncpg.Connection, api_key: str) -> int:
    """Number B registered by the tenant of `api_key`, and the customer's contact there."""
    added = await meta.app.add_number(api_key, NUMBER_B, waba_id=OTHER_WABA)
    assert added.status_code == 201, added.text
    inbound = await meta.sandbox.post(
        "/_sandbox/inbound", json={"phone_number_id": NUMBER_B, "from": CUSTOMER, "text": "hi"}
    )
    assert inbound.status_code == 200, inbound.text
    async with asyncio.timeout(10):
        while True:
            found = await db.fetchval(
                "SELECT id FROM contacts WHERE phone_number_id = $1", NUMBER_B
            )
            if found is not None:
                return int(found)
            await asyncio.sleep(0.05)


# --- cross-tenant and numbers that change hands --------------------------------------------------


async def test_a_number_taken_over_by_another_tenant_never_carries_the_old_tenants_rows(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await ready(bot, db, follow_ups=[{"after_minutes": 60, "text": "Still there?"}])
    await answered(bot, db)
    at = datetime.now(UTC) + timedelta(hours=2)
    assert (await remind(bot, at)).status_code == 201
    before = len(await bot.sent_bodies())

    await remove_number(bot, bot.api_key)
    other = await bot.app.create_tenant("New Owner")
    await register_number_a(bot, other["api_key"], "EAAG-new-owners-token")
    # The old tenant cannot set a reminder on the number it no longer has.
    late = await remind(bot, at)
    assert late.status_code == 404, late.text
    assert error_code(late) == "not_found"

    # Removing the number ended them (tenants.sql remove_number): nothing is left to claim.
    assert {(r["state"], r["reason"]) for r in await rows(db)} == {
        ("cancelled", "the number was removed")
    }
    async with follow_up_sender(bot, Clock(at + timedelta(hours=1))) as run_due:
        assert await run_due() == 0
    assert await sent_follow_ups(db) == []
    await asyncio.sleep(0.3)
    assert len(await bot.sent_bodies()) == before
    queued_for_new_owner = await db.fetchval(
        "SELECT count(*) FROM messages WHERE tenant_id = $1::uuid", other["id"]
    )
    assert queued_for_new_owner == 0


async def test_a_reminder_set_before_the_number_was_removed_does_not_go_when_it_comes_back(
    bot: Meta, db: asyncpg.Connection
) -> None:
    """Removing a number fails what it still had queued "instead of leaving days later if the
    number comes back" (tenants.sql remove_number): its reminders must not either."""
    await ready(bot, db)
    await answered(bot, db)
    at = datetime.now(UTC) + timedelta(hours=2)
    assert (await remind(bot, at, text="Your table is at 8 (old booking).")).status_code == 201
    await remove_number(bot, bot.api_key)
    await register_number_a(bot, bot.api_key, "EAAG-second-registration")
    await answered(bot, db, "back again", n=2)  # the window is open again
    new = await remind(bot, at + timedelta(minutes=5), text="New booking at 9.")
    assert new.status_code == 201, new.text

    async with follow_up_sender(bot, Clock(at + timedelta(minutes=10))) as run_due:
        assert await run_due() == 1
    old_row, new_row = await rows(db)
    assert old_row["state"] == "cancelled", old_row
    assert old_row["reason"] == "the number was removed"
    assert new_row["state"] == "sent"
    assert [m["text"] for m in await sent_follow_ups(db)] == ["New booking at 9."]


async def test_another_tenants_follow_up_ids_are_not_found_whatever_the_contact(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await ready(bot, db)
    await answered(bot, db)
    created = await remind(bot, datetime.now(UTC) + timedelta(hours=1))
    victim_id = created.json()["id"]
    # A second tenant with its own number and its own contact of the same wa_id.
    other = await bot.app.create_tenant("Prober")
    theirs = {"authorization": f"Bearer {other['api_key']}"}
    await contact_on_b(bot, db, other["api_key"])
    for number in (NUMBER_B, NUMBER_A):
        answer = await bot.app.client.delete(
            f"/v1/contacts/{CUSTOMER}/follow-ups/{victim_id}",
            params={"phone_number_id": number},
            headers=theirs,
        )
        assert answer.status_code == 404, answer.text
        error_code(answer)
    for odd in ("99999999999999999999", "-1", "1e3", "0x10"):
        answer = await bot.app.client.delete(
            f"/v1/contacts/{CUSTOMER}/follow-ups/{odd}",
            params={"phone_number_id": NUMBER_A},
            headers=bot.tenant(),
        )
        assert answer.status_code == 404, (odd, answer.text)
    (row,) = await rows(db)
    assert row["state"] == "scheduled"


# --- sending when it must not --------------------------------------------------------------------


async def test_a_follow_up_never_goes_to_a_customer_who_wrote_stop(
    bot: Meta, db: asyncpg.Connection
) -> None:
    """STOP is an opt-out (campaigns skip them); the assistant still answers it, and that answer
    must not start a ladder of "are you still there?" messages. Decision: follow-ups, being
    automated nudges, respect opt-outs; reminders, the business's own message at a time it
    set (as POST /v1/messages), do not."""
    await ready(bot, db, follow_ups=[{"after_minutes": 30, "text": "Still there?"}])
    await answered(bot, db, "STOP")
    assert await db.fetchval("SELECT count(*) FROM opt_outs") == 1
    (row,) = await rows(db)
    async with follow_up_sender(bot, Clock(row["due_at"])) as run_due:
        assert await run_due() == 1
    (row,) = await rows(db)
    assert row["state"] == "skipped", row
    assert "opted out" in row["reason"]
    assert await sent_follow_ups(db) == []


async def test_a_template_follow_up_skips_a_contact_opted_out_through_the_api(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(bot)
    await ready(bot, db, follow_ups=[{"after_minutes": 25 * 60, "template": TEMPLATE}])
    await answered(bot, db)
    opted = await bot.app.client.post(
        "/v1/opt-outs", json={"phone_number_id": NUMBER_A, "to": CUSTOMER}, headers=bot.tenant()
    )
    assert opted.status_code == 201, opted.text
    (row,) = await rows(db)
    async with follow_up_sender(bot, Clock(row["due_at"])) as run_due:
        assert await run_due() == 1
    (row,) = await rows(db)
    assert row["state"] == "skipped", row
    assert "opted out" in row["reason"]


async def test_a_follow_up_of_an_answer_meta_refused_is_not_sent(
    bot: Meta, db: asyncpg.Connection
) -> None:
    """The ladder counts from our answer: one the customer never got (Meta refused it) is
    nothing to follow up on."""
    await ready(bot, db, follow_ups=[{"after_minutes": 30, "text": "Still there?"}])
    fault = await bot.sandbox.post("/_sandbox/faults", json={"code": 131026, "times": 1})
    assert fault.status_code == 201, fault.text
    await bot.customer_writes("hola", sender=CUSTOMER)
    async with asyncio.timeout(15):
        while await db.fetchval("SELECT status FROM messages WHERE direction = 'out'") != "failed":
            await asyncio.sleep(0.05)
    (row,) = await rows(db)
    async with follow_up_sender(bot, Clock(row["due_at"])) as run_due:
        assert await run_due() == 1
    (row,) = await rows(db)
    assert row["state"] == "skipped", row
    assert "not delivered" in row["reason"]
    assert await sent_follow_ups(db) == []


async def test_a_duplicate_delivery_of_the_customers_message_cancels_nothing_and_answers_once(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await ready(bot, db, follow_ups=[{"after_minutes": 30, "text": "Still there?"}])
    await answered(bot, db)
    (scheduled,) = await rows(db)
    body = await db.fetchval("SELECT body FROM deliveries ORDER BY id LIMIT 1")
    again = await bot.app.post_webhook(bytes(body))  # Meta's retry of the same delivery
    assert again.status_code == 200, again.text
    async with asyncio.timeout(15):
        while await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'"):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM replies") == 1
    (row,) = await rows(db)
    assert row["id"] == scheduled["id"] and row["state"] == "scheduled"


# --- more than once ------------------------------------------------------------------------------


async def test_two_senders_and_a_lost_lease_send_a_written_follow_up_once_and_debit_once(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await configure_bot(
        bot, model="gpt-4o-mini", credits_per_reply=2, follow_ups=[{"after_minutes": 30}]
    )
    await give_credits(db, bot, 100)
    await answered(bot, db)
    (row,) = await rows(db)
    slow = await bot.sandbox.post("/_models/script", json={"delay_seconds": 1.5})
    assert slow.status_code == 200, slow.text
    clock = Clock(row["due_at"])
    settings = bot.app.settings
    async with (
        open_resources(settings, pool_size=4) as one,
        open_resources(settings, pool_size=4) as two,
    ):
        first = FollowUpSender.from_resources(one, clock)
        second = FollowUpSender.from_resources(two, clock)
        async with first.running(), second.running():
            assert await first.step() is None  # claimed; the model is writing
            # The first worker's lease runs out (it hangs): another claims the row.
            clock.now += timedelta(seconds=settings.worker_lease_seconds * 3)
            assert await second.step() is None
            await asyncio.gather(first.jobs.join(), second.jobs.join())
    (row,) = await rows(db)
    assert row["state"] == "sent" and row["claims"] == 2
    assert len(await sent_follow_ups(db)) == 1
    debits = await db.fetch("SELECT amount FROM credit_ledger WHERE reason = 'follow_up'")
    assert [d["amount"] for d in debits] == [-2]
    balance = await db.fetchval(
        "SELECT credits_balance FROM tenants WHERE id = $1::uuid", bot.tenant_id
    )
    assert balance == 100 - 2 - 2  # the answer and the one follow-up


async def test_the_customer_writing_while_a_follow_up_is_written_cancels_it_at_its_finish(
    bot: Meta, db: asyncpg.Connection
) -> None:
    """The indexer cancels the row being written, holding the contact; the finish takes the
    contact first, then finds the row cancelled and sends nothing (taking the row first, as
    it once did, locked the two in the opposite order to the indexer: a deadlock)."""
    await configure_bot(
        bot, model="gpt-4o-mini", credits_per_reply=2, follow_ups=[{"after_minutes": 30}]
    )
    await give_credits(db, bot, 100)
    await answered(bot, db)
    (row,) = await rows(db)
    slow = await bot.sandbox.post("/_models/script", json={"delay_seconds": 1.5})
    assert slow.status_code == 200, slow.text
    async with open_resources(bot.app.settings, pool_size=4) as resources:
        sender = FollowUpSender.from_resources(resources, Clock(row["due_at"]))
        async with sender.running():
            assert await sender.step() is None  # claimed; the model is writing
            assert await db.fetchval("SELECT state FROM follow_ups WHERE id = $1", row["id"]) == (
                "sending"
            )
            await bot.customer_writes("actually, one more thing", sender=CUSTOMER)
            await sender.jobs.join()
    finished = await db.fetchrow("SELECT state, reason FROM follow_ups WHERE id = $1", row["id"])
    assert (finished["state"], finished["reason"]) == ("cancelled", "the customer wrote")
    assert await sent_follow_ups(db) == []
    assert not await db.fetchval("SELECT count(*) FROM credit_ledger WHERE reason = 'follow_up'")


# --- storms and fairness -------------------------------------------------------------------------


async def test_a_reminder_flood_on_one_contact_is_capped(bot: Meta, db: asyncpg.Connection) -> None:
    await ready(bot, db)
    await answered(bot, db)
    at = datetime.now(UTC) + timedelta(hours=3)
    answers = await asyncio.gather(
        *(remind(bot, at, text=f"flood {i}") for i in range(MAX_WAITING_REMINDERS + 15))
    )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == MAX_WAITING_REMINDERS, statuses
    refused = [a for a in answers if a.status_code != 201]
    assert {a.status_code for a in refused} == {409}
    assert {error_code(a) for a in refused} == {"too_many_reminders"}
    waiting = await db.fetchval("SELECT count(*) FROM follow_ups WHERE state = 'scheduled'")
    assert waiting == MAX_WAITING_REMINDERS
    # One called off frees a place.
    first = answers[statuses.index(201)].json()["id"]
    cancelled = await bot.app.client.delete(
        f"/v1/contacts/{CUSTOMER}/follow-ups/{first}",
        params={"phone_number_id": NUMBER_A},
        headers=bot.tenant(),
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (await remind(bot, at, text="one more")).status_code == 201


async def test_one_tenants_backlog_does_not_starve_another_tenants_reminder(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await ready(bot, db)
    await answered(bot, db)
    contact_a = await db.fetchval("SELECT id FROM contacts WHERE phone_number_id = $1", NUMBER_A)
    other = await bot.app.create_tenant("Quiet Co")
    contact_b = await contact_on_b(bot, db, other["api_key"])
    soon = datetime.now(UTC) + timedelta(hours=1)
    # A backlog of 400 due rows of the noisy tenant, all older than the quiet tenant's one.
    await db.execute(
        "INSERT INTO follow_ups (tenant_id, phone_number_id, contact_id, kind, due_at, text)"
        " SELECT $1::uuid, $2, $3, 'reminder', $4::timestamptz + make_interval(secs => g), 'x'"
        " FROM generate_series(1, 400) g",
        bot.tenant_id,
        NUMBER_A,
        contact_a,
        soon,
    )
    quiet = await db.fetchval(
        "INSERT INTO follow_ups (tenant_id, phone_number_id, contact_id, kind, due_at, text)"
        " VALUES ($1::uuid, $2, $3, 'reminder', $4, 'y') RETURNING id",
        other["id"],
        NUMBER_B,
        contact_b,
        soon + timedelta(hours=1),
    )
    clock = Clock(soon + timedelta(days=2))  # every window closed: each row is quickly skipped
    async with open_resources(bot.app.settings, pool_size=4) as resources:
        sender = FollowUpSender.from_resources(resources, clock)
        async with sender.running():
            assert await sender.step() is None  # one claim
            await sender.jobs.join()
    state = await db.fetchval("SELECT state FROM follow_ups WHERE id = $1", quiet)
    assert state != "scheduled"
    handled_a = await db.fetchval(
        "SELECT count(*) FROM follow_ups WHERE tenant_id = $1::uuid AND claims > 0", bot.tenant_id
    )
    assert handled_a <= MAX_PER_TENANT


# --- time ---------------------------------------------------------------------------------------


async def test_a_number_whose_time_zone_changed_waits_for_its_new_hours(
    bot: Meta, db: asyncpg.Connection
) -> None:
    rule = {"after_minutes": 30, "between": ["09:00", "20:00"], "text": "Still there?"}
    await ready(bot, db, timezone="America/Bogota", follow_ups=[rule])
    await answered(bot, db)
    (row,) = await rows(db)
    # The business moves the number to Tokyo: 09:00-20:00 is Tokyo time now.
    await configure_bot(bot, timezone="Asia/Tokyo", follow_ups=[rule])
    tokyo_hours = (time(9), time(20))
    due = row["due_at"]
    while within(due, tokyo_hours, TOKYO):  # a moment outside Tokyo's hours, once it is due
        due += timedelta(hours=1)
    async with follow_up_sender(bot, Clock(due)) as run_due:
        assert await run_due() == 0  # put back, not sent
    (row,) = await rows(db)
    assert row["state"] == "scheduled" and row["claims"] == 0
    assert row["due_at"] > due and row["due_at"].astimezone(TOKYO).time() == time(9)
    assert await sent_follow_ups(db) == []


def test_the_senders_put_back_always_lands_inside_the_hours_across_dst() -> None:
    """into_hours may answer a time a DST gap swallowed (the window did not exist that day);
    the sender then puts the row back once more, and that lands inside the hours."""
    zones = ["America/New_York", "Europe/London", "America/Santiago", "Australia/Lord_Howe"]
    windows = [
        (time(2, 0), time(3, 0)),
        (time(2, 30), time(4, 0)),
        (time(22, 0), time(6, 0)),
        (time(1, 0), time(1, 30)),
        (time(0, 0), time(0, 30)),
        (time(23, 0), time(0, 30)),
    ]
    days = [
        datetime(2027, 3, 13, tzinfo=UTC),
        datetime(2027, 11, 6, tzinfo=UTC),
        datetime(2027, 3, 27, tzinfo=UTC),
        datetime(2027, 9, 4, tzinfo=UTC),
        datetime(2027, 4, 3, tzinfo=UTC),
    ]
    for name in zones:
        zone = ZoneInfo(name)
        for between in windows:
            for start in days:
                for step in range(3 * 24 * 4):
                    at = start + timedelta(minutes=15 * step)
                    first = into_hours(at, between, zone)
                    assert at <= first <= at + timedelta(days=2), (name, between, at)
                    final = (
                        first if within(first, between, zone) else into_hours(first, between, zone)
                    )
                    assert within(final, between, zone), (name, between, at, first)
                    assert final - at <= timedelta(days=3)


async def test_reminder_at_edge_cases_answer_a_json_error(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await ready(bot, db)
    await answered(bot, db)
    wrong: list[Any] = [
        "2027-06-30T23:59:60Z",  # a leap second
        "0000-01-01T00:00:00Z",  # year 0
        "9999-12-31T23:59:59-05:00",  # past year 9999 in UTC
        "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
        "99999-01-01T00:00:00Z",
        "２０２７-03-01T09:00:00Z",  # full-width digits  # noqa: RUF001
        "٢٠٢٧-03-01T09:00:00Z",  # Arabic-Indic digits
        "2027-03-01T09:00:00+24:00",
        "2027-02-30T09:00:00Z",
        "2027-03-01T09:00:00",  # no offset
        "2027-03-01",
        "2020-01-01T00:00:00Z",  # past
        (datetime.now(UTC) + timedelta(days=367)).isoformat(),
        1_800_000_000,
        1.5,
        True,
        None,
        ["2027-03-01T09:00:00Z"],
        {"at": "2027-03-01T09:00:00Z"},
        "x" * 10_000,
    ]
    for at in wrong:
        answer = await bot.app.client.post(
            f"/v1/contacts/{CUSTOMER}/reminders",
            json={"phone_number_id": NUMBER_A, "at": at, "text": "t"},
            headers=bot.tenant(),
        )
        assert answer.status_code == 422, (at, answer.text)
        assert error_code(answer) == "invalid_field", (at, answer.text)
    # Nanoseconds are RFC 3339 too: accepted (to the microsecond).
    soon = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.123456789z")
    assert (await remind(bot, soon)).status_code == 201
    # Other wrong bodies: never a 500.
    for body in (
        {"text": "   "},
        {"text": "a\x00b"},
        {"template": "still_here"},
        {"template": {"name": "still_here"}},
        {"template": {"name": "still_here", "language": {"code": "en_US"}, "components": 3}},
        {"text": "x" * 5000},
        {"text": "ok", "extra": 1},
    ):
        answer = await remind(bot, datetime.now(UTC) + timedelta(hours=1), **body)
        assert 400 <= answer.status_code < 500, (body, answer.text)
        error_code(answer)


# --- credits and secrets -------------------------------------------------------------------------


async def test_a_model_that_fails_costs_no_credit_and_leaks_no_key(
    bot: Meta, db: asyncpg.Connection, caplog: Any
) -> None:
    """The model fails while writing: the rule's template goes instead, free; the reason the row
    shows (the tenant reads it), the audit and the logs never carry the platform's key."""
    await seed_template(bot)
    await configure_bot(
        bot,
        model="gpt-4o-mini",
        credits_per_reply=3,
        follow_ups=[{"after_minutes": 30, "template": TEMPLATE}],
    )
    await give_credits(db, bot, 100)
    await answered(bot, db)
    (row,) = await rows(db)
    failing = await bot.sandbox.post("/_models/script", json={"fail": [401] * 8})
    assert failing.status_code == 200, failing.text
    caplog.set_level("DEBUG")
    async with follow_up_sender(bot, Clock(row["due_at"])) as run_due:
        assert await run_due() == 1
    (row,) = await rows(db)
    assert row["state"] == "sent" and row["template"] == TEMPLATE
    assert row["reason"] and row["reason"].startswith("model failed")
    key = bot.app.settings.openai_api_key
    assert key
    shown = await bot.app.client.get(
        f"/v1/contacts/{CUSTOMER}/follow-ups",
        params={"phone_number_id": NUMBER_A},
        headers=bot.tenant(),
    )
    audits = await db.fetch("SELECT detail::text FROM audit_log")
    for text in (shown.text, caplog.text, *(a["detail"] for a in audits)):
        assert key not in text
    debits = await db.fetchval("SELECT count(*) FROM credit_ledger WHERE reason = 'follow_up'")
    assert debits == 0
    assert await db.fetchval("SELECT credits_balance FROM tenants") == 100 - 3
