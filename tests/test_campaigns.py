"""Campaigns against the sandbox Meta: recipients from JSON and CSV, variables per recipient,
opt-outs, the messaging limit, quality and pushback pauses, replies overtaking a campaign,
cost, progress and the recipients' outcomes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests.conftest import NUMBER_A, WABA, Meta, meta_running, start_worker
from wa_cloud.campaigns import cost
from wa_cloud.campaigns.recipients import from_csv, normalise_phone
from wa_cloud.campaigns.runner import SETTLE_EVERY_SECONDS
from wa_cloud.config import Settings
from wa_cloud.db.queries import Q

PROMO = "Hi {{1}}, your code {{2}} gives you a gift."


async def seed_template(
    meta: Meta, name: str = "spring_promo", body: str = PROMO, category: str = "MARKETING"
) -> None:
    seeded = await meta.sandbox.post(
        "/_sandbox/templates",
        json={
            "waba_id": WABA,
            "name": name,
            "language": "en_US",
            "body": body,
            "category": category,
        },
    )
    assert seeded.status_code == 201, seeded.text


def recipients(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"to": f"+34 600 {start + i:06d}", "variables": [f"Name{start + i}", f"C{start + i}"]}
        for i in range(count)
    ]


async def create(meta: Meta, **body: Any) -> dict[str, Any]:
    request = {
        "from": NUMBER_A,
        "name": "Spring",
        "template": {"name": "spring_promo", "language": {"code": "en_US"}},
        **body,
    }
    response = await meta.app.client.post("/v1/broadcasts", json=request, headers=meta.tenant())
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def progress(meta: Meta, broadcast_id: str) -> dict[str, Any]:
    response = await meta.app.client.get(f"/v1/broadcasts/{broadcast_id}", headers=meta.tenant())
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_for(
    meta: Meta, broadcast_id: str, done: Any, timeout: float = 30.0
) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                shown = await progress(meta, broadcast_id)
                if done(shown):
                    return shown
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"campaign never got there: {shown}") from None


def sent_to(bodies: list[dict[str, Any]], name: str = "spring_promo") -> list[str]:
    return [
        b["to"] for b in bodies if b.get("type") == "template" and b["template"]["name"] == name
    ]


async def test_a_template_campaign_reaches_each_recipient_once_with_their_variables(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(meta)
    listed = [
        *recipients(30),
        {"to": "12", "variables": ["x", "y"]},  # line 31: not a phone number
        {"to": "0034 600 000003", "variables": ["Again", "C3"]},  # line 32: line 4's number
    ]
    created = await create(meta, recipients=listed)
    assert created["status"] == "running"
    assert created["counts"]["total"] == 32 and created["counts"]["skipped"] == 2
    assert created["skipped"] == [
        {"to": "12", "line": 31, "reason": "invalid_number"},
        {"to": "34600000003", "line": 32, "reason": "duplicate"},
    ]
    rates = cost.price_table().rates_for("34600000000")
    assert created["estimate"] == {
        "messages": 30,
        "currency": "USD",
        "amount": float(rates.marketing * 30),
    }
    done = await wait_for(
        meta,
        created["id"],
        lambda b: (
            b["status"] == "done" and b["counts"]["queued"] == 0 and b["cost"]["billable"] == 30
        ),
    )
    # The actual cost: what Meta's statuses said it bills, priced by the table.
    assert done["cost"] == {
        "billable": 30,
        "currency": "USD",
        "amount": float(rates.marketing * 30),
    }
    assert done["counts"]["skipped"] == 2
    assert done["counts"]["sent"] + done["counts"]["delivered"] + done["counts"]["read"] == 30

    bodies = await meta.sent_bodies()
    assert sorted(sent_to(bodies)) == sorted(f"34600{i:06d}" for i in range(30))
    seventh = next(b for b in bodies if b.get("to") == "34600000007")
    assert seventh["template"]["components"] == [
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Name7"}, {"type": "text", "text": "C7"}],
        }
    ]
    rows = await db.fetch(
        "SELECT priority, author, broadcast_id::text FROM messages WHERE direction = 'out'"
    )
    assert len(rows) == 30 and {(r[0], r[1], r[2]) for r in rows} == {
        (1, "campaign", created["id"])
    }

    outcome = await meta.app.client.get(
        f"/v1/broadcasts/{created['id']}/recipients.csv", headers=meta.tenant()
    )
    assert outcome.status_code == 200
    lines = list(csv.reader(io.StringIO(outcome.text)))
    assert lines[0] == ["to", "status", "wamid", "error_code", "reason"]
    assert len(lines) == 33
    assert lines[31] == ["12", "skipped", "", "", "invalid_number"]
    assert lines[1][0] == "34600000000" and lines[1][2].startswith("wamid.")

    listed_all = await meta.app.client.get("/v1/broadcasts", headers=meta.tenant())
    assert [b["id"] for b in listed_all.json()["data"]] == [created["id"]]


async def test_a_csv_of_1000_rows_reports_invalid_and_duplicate_lines_and_a_dry_run_stores_nothing(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(meta, "named_promo", "Hi {{first_name}}, use {{code}} today.")
    await db.execute("UPDATE templates SET parameter_format = 'NAMED' WHERE name = 'named_promo'")
    lines = ["phone,first_name,code"]
    for i in range(1000):
        if i % 100 == 7:
            lines.append(f"not-a-number-{i},Ana,X{i}")
        elif i % 100 == 9:
            lines.append(f"+1 (650) 555-{i - 1:04d},Dup,X{i}")  # the line before's number
        else:
            lines.append(f"+1 (650) 555-{i:04d},Name{i},X{i}")
    data = "\n".join(lines).encode()
    response = await meta.app.client.post(
        "/v1/broadcasts",
        data={
            "from": NUMBER_A,
            "name": "CSV",
            "template": json.dumps({"name": "named_promo", "language": {"code": "en_US"}}),
            "dry_run": "true",
        },
        files={"recipients": ("list.csv", data, "text/csv")},
        headers=meta.tenant(),
    )
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["id"] is None and shown["dry_run"] is True
    assert shown["counts"]["total"] == 1000
    assert shown["counts"]["skipped"] == 20 and shown["counts"]["queued"] == 980
    invalid = [s for s in shown["skipped"] if s["reason"] == "invalid_number"]
    duplicates = [s for s in shown["skipped"] if s["reason"] == "duplicate"]
    assert [s["line"] for s in invalid] == [i + 2 for i in range(1000) if i % 100 == 7]
    assert [s["line"] for s in duplicates] == [i + 2 for i in range(1000) if i % 100 == 9]
    us = cost.price_table().rates_for("16505550000").marketing
    assert shown["estimate"]["amount"] == float(us * 980)
    assert await db.fetchval("SELECT count(*) FROM broadcasts") == 0
    assert await db.fetchval("SELECT count(*) FROM broadcast_recipients") == 0

    parsed = from_csv(data)
    assert parsed.recipients[0].variables == {"first_name": "Name0", "code": "X0"}


async def test_variables_that_do_not_fit_the_template_skip_that_recipient_only(meta: Meta) -> None:
    await seed_template(meta)
    created = await create(
        meta,
        recipients=[
            {"to": "+34600000001", "variables": ["Ana", "C1"]},
            {"to": "+34600000002", "variables": ["only one"]},
        ],
        dry_run=True,
    )
    assert created["counts"]["queued"] == 1
    (skipped,) = created["skipped"]
    assert skipped["line"] == 2 and skipped["reason"].startswith("variables_mismatch")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+34 600-12 34 56", "34600123456"),
        ("0034600123456", "34600123456"),
        ("(650) 555 0100", "6505550100"),
        ("0600123456", None),
        ("+1 23", None),
        ("+1234567890123456", None),
    ],
)
def test_phone_numbers_are_normalised_to_e164_digits(raw: str, expected: str | None) -> None:
    assert normalise_phone(raw) == expected


def test_the_cost_estimate_follows_the_price_table() -> None:
    table = cost.parse_prices(
        "# test\ncountry,calling_codes,marketing,utility,authentication\n"
        "US,1,0.0250,0.0040,0.0040\nPR,1787,0.0300,0.0050,0.0050\nZZ,,0.0600,0.0080,0.0080\n"
    )
    recipients = [("16505550100", False), ("17875550100", False), ("999123456", False)]
    assert cost.estimate(recipients, "marketing", table)["amount"] == float(
        Decimal("0.0250") + Decimal("0.0300") + Decimal("0.0600")
    )
    # Utility inside an open window and free-form messages are free.
    assert cost.estimate([("16505550100", True)], "utility", table)["amount"] == 0
    assert cost.estimate([("16505550100", False)], "utility", table)["amount"] == 0.004
    assert cost.estimate([("16505550100", False)], "service", table)["amount"] == 0


def webhook(field: str, value: dict[str, Any], *, number: bool = True) -> bytes:
    change: dict[str, Any] = {"field": field, "value": value}
    if number:
        value.setdefault("messaging_product", "whatsapp")
        value.setdefault(
            "metadata", {"display_phone_number": "15550783881", "phone_number_id": NUMBER_A}
        )
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": WABA, "time": 1764500000, "changes": [change]}],
        }
    ).encode()


def preference(wa_id: str, choice: str) -> bytes:
    return webhook(
        "user_preferences",
        {
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": wa_id}],
            "user_preferences": [
                {
                    "wa_id": wa_id,
                    "detail": "User requested to stop marketing messages",
                    "category": "marketing_messages",
                    "value": choice,
                    "timestamp": 1764500000,
                }
            ],
        },
    )


async def wait_rows(db: asyncpg.Connection, query: str, expected: Any, *args: Any) -> None:
    async with asyncio.timeout(10):
        while await db.fetchval(query, *args) != expected:
            await asyncio.sleep(0.05)


async def test_opt_outs_by_stop_word_and_user_preferences_skip_marketing_until_taken_back(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(meta)
    await seed_template(meta, "receipt", "Hi {{1}}, receipt {{2}} is ready.", "UTILITY")
    await meta.customer_writes("¡Stop!", sender="34600000001")
    await meta.customer_writes("stop sending me the catalogue please", sender="34600000004")
    sent = await meta.app.post_webhook(preference("34600000002", "stop"))
    assert sent.status_code == 200
    count = "SELECT count(*) FROM opt_outs"
    await wait_rows(db, count, 2)
    sources = dict(await db.fetch("SELECT recipient, source FROM opt_outs"))
    assert sources == {"34600000001": "keyword", "34600000002": "user_preferences"}

    added = await meta.app.client.post(
        "/v1/opt-outs",
        json={"phone_number_id": NUMBER_A, "to": "+34 600 000003"},
        headers=meta.tenant(),
    )
    assert added.status_code == 201, added.text
    shown = await meta.app.client.get(
        "/v1/opt-outs", params={"phone_number_id": NUMBER_A}, headers=meta.tenant()
    )
    assert [o["to"] for o in shown.json()["data"]] == ["34600000001", "34600000002", "34600000003"]
    marketing = await create(meta, recipients=recipients(5), dry_run=True)
    assert [(s["to"], s["reason"]) for s in marketing["skipped"]] == [
        ("34600000001", "opted_out"),
        ("34600000002", "opted_out"),
        ("34600000003", "opted_out"),
    ]
    utility = await create(
        meta,
        template={"name": "receipt", "language": {"code": "en_US"}},
        recipients=recipients(5),
        dry_run=True,
    )
    assert utility["skipped"] == []

    removed = await meta.app.client.delete(
        "/v1/opt-outs/34600000003", params={"phone_number_id": NUMBER_A}, headers=meta.tenant()
    )
    assert removed.status_code == 200
    await meta.app.post_webhook(preference("34600000002", "resume"))
    await wait_rows(db, count, 1)
    # A start word takes back only the contact's own stop word: a user_preferences stop stays.
    await meta.app.post_webhook(preference("34600000002", "stop"))
    await wait_rows(db, count, 2)
    await meta.customer_writes("START", sender="34600000002")
    await meta.customer_writes("Start", sender="34600000001")
    await wait_rows(
        db,
        "SELECT string_agg(recipient || ':' || source, ',') FROM opt_outs",
        "34600000002:user_preferences",
    )


async def test_a_number_registered_again_by_another_tenant_starts_without_the_old_opt_outs(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(meta)
    added = await meta.app.client.post(
        "/v1/opt-outs",
        json={"phone_number_id": NUMBER_A, "to": "34600000001"},
        headers=meta.tenant(),
    )
    assert added.status_code == 201, added.text
    assert [
        r["recipient"]
        for r in await db.fetch(
            Q.opted_out_of, NUMBER_A, ["34600000001"], uuid.UUID(meta.tenant_id)
        )
    ] == ["34600000001"]
    other = await meta.app.create_tenant("Next Owner")
    assert await db.fetch(Q.opted_out_of, NUMBER_A, ["34600000001"], uuid.UUID(other["id"])) == []


async def test_the_messaging_limit_holds_back_new_recipients(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(meta)
    await db.execute("UPDATE numbers SET messaging_limit = 'TIER_50'")
    created = await create(meta, recipients=recipients(60))
    held = await wait_for(
        meta,
        created["id"],
        lambda b: b["held_reason"] == "messaging_limit" and b["counts"]["queued"] == 10,
    )
    assert held["status"] == "running"
    await asyncio.sleep(0.5)  # nothing more leaves while the limit holds
    assert len(sent_to(await meta.sent_bodies())) == 50
    # Recipients messaged in the last 24 hours are not new: a second campaign reaches them.
    again = await create(meta, name="Again", recipients=recipients(5))
    await wait_for(meta, again["id"], lambda b: b["status"] == "done" and not b["counts"]["queued"])
    assert len(sent_to(await meta.sent_bodies())) == 55


async def test_a_quality_drop_pauses_a_running_campaign_until_resumed(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(meta)
    created = await create(meta, recipients=recipients(400))
    async with asyncio.timeout(10):
        while len(sent_to(await meta.sent_bodies())) < 20:
            await asyncio.sleep(0.02)
    display = await db.fetchval("SELECT display_phone_number FROM numbers")
    flagged = webhook(
        "phone_number_quality_update",
        {"display_phone_number": display, "event": "FLAGGED", "current_limit": "TIER_10K"},
        number=False,
    )
    assert (await meta.app.post_webhook(flagged)).status_code == 200
    paused = await wait_for(meta, created["id"], lambda b: b["status"] == "paused")
    assert paused["paused_reason"].startswith("quality_rating_red")
    assert await db.fetchval("SELECT messaging_limit FROM numbers") == "TIER_10K"
    await asyncio.sleep(1.5)  # what the sender had claimed leaves; nothing after it
    settled = len(sent_to(await meta.sent_bodies()))
    await asyncio.sleep(1.0)
    assert len(sent_to(await meta.sent_bodies())) == settled < 400

    unflagged = webhook(
        "phone_number_quality_update",
        {"display_phone_number": display, "event": "UNFLAGGED", "current_limit": "TIER_10K"},
        number=False,
    )
    assert (await meta.app.post_webhook(unflagged)).status_code == 200
    await wait_rows(db, "SELECT quality_rating FROM numbers", "GREEN")
    resumed = await meta.app.client.post(
        f"/v1/broadcasts/{created['id']}/resume", headers=meta.tenant()
    )
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    await wait_for(
        meta, created["id"], lambda b: b["status"] == "done" and not b["counts"]["queued"]
    )
    reached = sent_to(await meta.sent_bodies())
    assert sorted(reached) == sorted(f"34600{i:06d}" for i in range(400))


async def test_a_paused_campaigns_put_back_message_leaves_its_number_idle(
    meta: Meta, db: asyncpg.Connection
) -> None:
    """A retry put back after a pause withdrew the rest waits for the campaign: the number is
    neither picked to claim nothing nor woken for it (the sender would spin on it and leave
    every other number waiting)."""
    await seed_template(meta)
    month_ahead = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    created = await create(meta, recipients=recipients(3), at=month_ahead)
    paused = await meta.app.client.post(
        f"/v1/broadcasts/{created['id']}/pause", headers=meta.tenant()
    )
    assert paused.status_code == 200, paused.text
    await db.execute(Q.ensure_pacing, NUMBER_A)
    await db.execute(
        "INSERT INTO messages (tenant_id, phone_number_id, direction, type, payload, request,"
        " recipient, status, run_after, author, broadcast_id, priority)"
        " VALUES ($1::uuid, $2, 'out', 'template', '{}', '{}', '34600000000', 'queued', now(),"
        " 'campaign', $3::uuid, 1)",
        meta.tenant_id,
        NUMBER_A,
        created["id"],
    )
    assert await db.fetchrow(Q.claim_number, 0.5) is None
    assert await db.fetchval(Q.outbox_next_wake, 0.5) is None
    # Resumed, it is due again.
    await db.execute("UPDATE broadcasts SET status = 'running' WHERE id = $1::uuid", created["id"])
    assert (await db.fetchrow(Q.claim_number, 0.5))["phone_number_id"] == NUMBER_A


async def test_conversation_replies_overtake_a_running_campaign(meta: Meta) -> None:
    await seed_template(meta)
    await meta.customer_writes("where is my order?", sender="447700900123")
    created = await create(meta, recipients=recipients(480))
    async with asyncio.timeout(10):
        while len(sent_to(await meta.sent_bodies())) < 40:
            await asyncio.sleep(0.02)
    before = len(sent_to(await meta.sent_bodies()))
    reply = await meta.send(to="447700900123", type="text", text={"body": "On its way!"})
    assert reply.status_code == 202, reply.text
    await meta.wait_status(reply.json()["id"], "accepted", "sent", "delivered", "read")
    bodies = await meta.sent_bodies()
    position = next(i for i, b in enumerate(bodies) if b.get("type") == "text")
    overtaken = len(sent_to(bodies[:position])) - before
    # At 80/s a campaign keeps 2 s (160 sends) in the outbox, all due before the reply; the
    # reply waits only for the campaign slots already claimed (a quarter second, claimed half
    # a second ahead) and the API call: well under the 160 it would wait behind otherwise.
    assert overtaken <= 100, overtaken
    await wait_for(
        meta, created["id"], lambda b: b["status"] == "done" and not b["counts"]["queued"]
    )


async def test_a_worker_killed_mid_campaign_sends_each_recipient_exactly_once(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, run_worker=False) as meta:
        await seed_template(meta)
        # A slow Meta: the kill finds sends in flight, some Meta has and some it may not.
        slow = await meta.sandbox.post(
            "/_sandbox/latency", json={"path_contains": "/messages", "seconds": 0.2}
        )
        assert slow.status_code == 201, slow.text
        created = await create(meta, recipients=recipients(300))
        first = start_worker(meta.app.settings, WA_GRAPH_TIMEOUT_SECONDS="30")
        try:
            async with asyncio.timeout(30):
                while len(sent_to(await meta.sent_bodies())) < 60:
                    await asyncio.sleep(0.01)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        second = start_worker(
            meta.app.settings,
            WA_GRAPH_TIMEOUT_SECONDS="30",
            WA_CAMPAIGN_RESEND_AFTER_SECONDS="6",
        )
        try:
            await wait_for(
                meta,
                created["id"],
                lambda b: (
                    b["status"] == "done"
                    and b["counts"]["sent"] + b["counts"]["delivered"] + b["counts"]["read"] == 300
                ),
                timeout=90,
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(15)
        reached = sent_to(await meta.sent_bodies())
        assert sorted(reached) == [f"34600{i:06d}" for i in range(300)]
        rows = await db.fetch(
            "SELECT m.recipient, m.status, m.wamid FROM broadcast_recipients r"
            " JOIN messages m ON m.id = r.message_id"
        )
        assert len({r["recipient"] for r in rows}) == 300
        assert {r["status"] for r in rows} <= {"accepted", "sent", "delivered", "read"}
        assert len({r["wamid"] for r in rows}) == 300


async def lose_outcomes(db: asyncpg.Connection, recipients_: list[str], *, claimed: float) -> None:
    """What a worker killed mid-request leaves: the send dispatched, its outcome unknown."""
    await db.execute(
        "UPDATE messages SET status = 'unknown', wamid = NULL, accepted_at = NULL,"
        " dispatched_at = now(), run_after = now() - make_interval(secs => $2),"
        ' errors = \'[{"code": null, "title": "Outcome unknown"}]\''
        " WHERE recipient = ANY($1::text[]) AND broadcast_id IS NOT NULL",
        recipients_,
        claimed,
    )


async def test_a_send_meta_has_but_we_never_recorded_is_settled_from_its_statuses(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(meta)
    created = await create(meta, recipients=recipients(5))
    await wait_for(
        meta, created["id"], lambda b: b["status"] == "done" and b["counts"]["read"] == 5
    )
    before = {
        r["recipient"]: r["wamid"]
        for r in await db.fetch("SELECT recipient, wamid FROM messages WHERE direction = 'out'")
    }
    # Meta accepted these and sent their statuses; the worker died before recording its answer.
    await lose_outcomes(db, ["34600000001", "34600000003"], claimed=3600)
    await wait_rows(
        db,
        "SELECT count(*) FROM messages WHERE status = 'read' AND broadcast_id IS NOT NULL",
        5,
    )
    after = {
        r["recipient"]: r["wamid"]
        for r in await db.fetch("SELECT recipient, wamid FROM messages WHERE direction = 'out'")
    }
    assert after == before
    assert sorted(sent_to(await meta.sent_bodies())) == [f"34600{i:06d}" for i in range(5)]
    bodies = await meta.sent_bodies()
    assert {b["biz_opaque_callback_data"] for b in bodies} == {
        f"broadcast:{created['id']}:{line}" for line in range(1, 6)
    }


async def test_a_send_meta_never_got_goes_again_after_the_grace_and_only_then(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, run_worker=False) as meta:
        await seed_template(meta)
        worker = start_worker(meta.app.settings, WA_CAMPAIGN_RESEND_AFTER_SECONDS="600")
        try:
            created = await create(meta, recipients=recipients(4))
            await wait_for(
                meta,
                created["id"],
                lambda b: b["status"] == "done" and b["counts"]["read"] == 4,
            )
            # As if the worker died after marking the send dispatched and before the request
            # left: no status of Meta names it (its statuses are gone).
            await db.execute(
                "DELETE FROM statuses WHERE biz_opaque_callback_data = $1",
                f"broadcast:{created['id']}:3",
            )
            await lose_outcomes(db, ["34600000002"], claimed=300)
            # A settling round passes within the grace: still unknown, not sent again.
            await asyncio.sleep(SETTLE_EVERY_SECONDS + 0.5)
            assert (
                await db.fetchval("SELECT status FROM messages WHERE recipient = '34600000002'")
                == "unknown"
            )
            await lose_outcomes(db, ["34600000002"], claimed=660)
            await wait_rows(
                db,
                "SELECT status IN ('sent', 'delivered', 'read') FROM messages"
                " WHERE recipient = '34600000002'",
                True,
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(15)
        assert sent_to(await meta.sent_bodies()).count("34600000002") == 2
        shown = await progress(meta, created["id"])
        counts = shown["counts"]
        assert counts["queued"] == 0 and counts["failed"] == 0
        assert counts["sent"] + counts["delivered"] + counts["read"] == 4


async def test_bad_campaign_input_gets_a_clear_error_never_a_500(meta: Meta) -> None:
    await seed_template(meta)
    template = json.dumps({"name": "spring_promo", "language": {"code": "en_US"}})

    async def form(fields: dict[str, str], csv_data: bytes) -> Any:
        return await meta.app.client.post(
            "/v1/broadcasts",
            data={"from": NUMBER_A, "name": "x", "template": template, **fields},
            files={"recipients": ("r.csv", csv_data, "text/csv")},
            headers=meta.tenant(),
        )

    nul = await form({"name": "a\x00b"}, b"+34600000001,A,B\n")
    assert (nul.status_code, nul.json()["error"]["code"]) == (422, "invalid_field")
    huge = await form({}, b"+34600000001," + b"x" * 200_000 + b",B\n")
    assert huge.status_code == 422
    assert huge.json()["error"]["code"] in ("invalid_recipients", "field_too_large")
    for at in ("9999-12-31T23:59:59-14:00", "2999-01-01T00:00:00", "tomorrow"):
        response = await meta.app.client.post(
            "/v1/broadcasts",
            json={
                "from": NUMBER_A,
                "name": "x",
                "template": {"name": "spring_promo", "language": {"code": "en_US"}},
                "recipients": recipients(1),
                "at": at,
            },
            headers=meta.tenant(),
        )
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_field")


async def test_a_deactivated_tenant_changes_no_opt_outs_or_templates(meta: Meta) -> None:
    admin = {"authorization": f"Bearer {meta.app.settings.admin_token}"}
    off = await meta.app.client.patch(
        f"/v1/admin/tenants/{meta.tenant_id}", json={"active": False}, headers=admin
    )
    assert off.status_code == 200, off.text
    added = await meta.app.client.post(
        "/v1/opt-outs",
        json={"phone_number_id": NUMBER_A, "to": "+34600000001"},
        headers=meta.tenant(),
    )
    assert added.status_code == 403
    put = await meta.app.client.put(
        "/v1/templates/order_update",
        params={"phone_number_id": NUMBER_A},
        json={"name": "order_update"},
        headers=meta.tenant(),
    )
    assert put.status_code == 403
