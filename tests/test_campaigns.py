"""Campaigns against the sandbox Meta: recipients from JSON and CSV, variables per recipient,
opt-outs, the messaging limit, quality and pushback pauses, replies overtaking a campaign,
cost, progress and the recipients' outcomes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests.conftest import NUMBER_A, WABA, Meta
from wa_cloud.campaigns import cost
from wa_cloud.campaigns.recipients import from_csv, normalise_phone

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
        meta, created["id"], lambda b: b["status"] == "done" and b["counts"]["queued"] == 0
    )
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
