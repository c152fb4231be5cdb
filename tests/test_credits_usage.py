"""Credits and usage: the operator's movements, a tenant's view of its own, and the two calls
the assistant's reply pipeline makes (ai/usage.py) to pay for a reply and record its tokens."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import NUMBER_A, NUMBER_B, Running
from wa_cloud.ai.usage import credits_balance, debit_reply, record_tokens
from wa_cloud.db.pool import connect


def _key(tenant: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {tenant['api_key']}"}


async def _credits(web: Running, tenant_id: str, body: Any) -> httpx.Response:
    return await web.client.post(
        f"/v1/admin/tenants/{tenant_id}/credits", json=body, headers=web.admin()
    )


def _error(response: httpx.Response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": {"code": code, "message": message}}


async def _ledger(db: asyncpg.Connection, tenant_id: str) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT amount, balance_before, balance_after, reason, phone_number_id, reply_id"
        " FROM credit_ledger WHERE tenant_id = $1::uuid ORDER BY id",
        tenant_id,
    )
    return [tuple(r) for r in rows]


async def _tenant(db: asyncpg.Connection, balance: int = 0) -> uuid.UUID:
    tenant_id: uuid.UUID = await db.fetchval(
        "INSERT INTO tenants (name, credits_balance) VALUES ('T', $1) RETURNING id", balance
    )
    return tenant_id


# -- the operator's credits ---------------------------------------------------------------------


async def test_admin_adds_and_corrects_credits_with_a_ledger_row_each(
    web: Running, db: asyncpg.Connection
) -> None:
    tenant = await web.create_tenant("Paying Co")
    tenant_id = tenant["id"]
    assert tenant["credits_balance"] == 0

    added = await _credits(web, tenant_id, {"amount": 100, "reason": "invoice 1"})
    assert added.status_code == 201, added.text
    body = added.json()
    entry = body.pop("entry")
    assert body == {"tenant_id": tenant_id, "credits_balance": 100}
    assert isinstance(entry.pop("id"), int)
    assert datetime.fromisoformat(entry.pop("created_at"))
    assert entry == {
        "amount": 100,
        "balance_before": 0,
        "balance_after": 100,
        "reason": "invoice 1",
        "phone_number_id": None,
    }

    corrected = await _credits(web, tenant_id, {"amount": -30, "reason": "  typo  "})
    assert corrected.status_code == 201, corrected.text
    assert corrected.json()["credits_balance"] == 70
    assert corrected.json()["entry"]["balance_before"] == 100
    assert corrected.json()["entry"]["reason"] == "typo"

    refused = await _credits(web, tenant_id, {"amount": -71, "reason": "too much"})
    _error(refused, 422, "insufficient_credits", "The tenant has 70 credits: 71 cannot be taken.")
    emptied = await _credits(web, tenant_id, {"amount": -70, "reason": "refund"})
    assert emptied.status_code == 201 and emptied.json()["credits_balance"] == 0

    assert (
        await db.fetchval("SELECT credits_balance FROM tenants WHERE id = $1::uuid", tenant_id) == 0
    )
    assert await _ledger(db, tenant_id) == [
        (100, 0, 100, "invoice 1", None, None),
        (-30, 100, 70, "typo", None, None),
        (-70, 70, 0, "refund", None, None),
    ]
    audit = await db.fetch(
        "SELECT actor, severity, detail FROM audit_log"
        " WHERE tenant_id = $1::uuid AND action = 'credits.adjusted' ORDER BY id",
        tenant_id,
    )
    assert [(r["actor"], r["severity"], r["detail"]) for r in audit] == [
        ("admin", "info", {"amount": 100, "reason": "invoice 1", "balance_after": 100}),
        ("admin", "warning", {"amount": -30, "reason": "typo", "balance_after": 70}),
        ("admin", "warning", {"amount": -70, "reason": "refund", "balance_after": 0}),
    ]
    shown = await web.client.get(f"/v1/admin/tenants/{tenant_id}", headers=web.admin())
    assert shown.json()["credits_balance"] == 0
    await _credits(web, tenant_id, {"amount": 5, "reason": "gift"})
    listed = await web.client.get("/v1/admin/tenants", headers=web.admin())
    assert [t["credits_balance"] for t in listed.json()["data"]] == [5]


async def test_credits_are_refused_for_bad_bodies_unknown_tenants_and_tenant_keys(
    web: Running, db: asyncpg.Connection
) -> None:
    tenant = await web.create_tenant("Paying Co")
    tenant_id = tenant["id"]
    whole = "'amount' must be a whole number from -1000000000 to 1000000000."
    for body, code, message in (
        ({"amount": 0, "reason": "x"}, "invalid_field", "'amount' must not be 0."),
        ({"reason": "x"}, "missing_field", "'amount' is required."),
        ({"amount": None, "reason": "x"}, "missing_field", "'amount' is required."),
        ({"amount": True, "reason": "x"}, "invalid_field", whole),
        ({"amount": 1.5, "reason": "x"}, "invalid_field", whole),
        ({"amount": "10", "reason": "x"}, "invalid_field", whole),
        ({"amount": 1_000_000_001, "reason": "x"}, "invalid_field", whole),
        ({"amount": -1_000_000_001, "reason": "x"}, "invalid_field", whole),
        ({"amount": 10}, "missing_field", "'reason' is required."),
        ({"amount": 10, "reason": " "}, "invalid_field", "'reason' must be a non-empty string."),
        ({"amount": 10, "reason": "x", "note": 1}, "unknown_field", "Unknown field(s): note."),
    ):
        _error(await _credits(web, tenant_id, body), 422, code, message)
    unknown = await _credits(web, str(uuid.uuid4()), {"amount": 10, "reason": "x"})
    _error(unknown, 404, "not_found", "No tenant with that id.")
    malformed = await _credits(web, "not-a-uuid", {"amount": 10, "reason": "x"})
    _error(malformed, 404, "not_found", "No such resource.")
    # A tenant cannot give itself credits: its key is not the admin token.
    own = await web.client.post(
        f"/v1/admin/tenants/{tenant_id}/credits",
        json={"amount": 10, "reason": "x"},
        headers=_key(tenant),
    )
    _error(own, 401, "unauthorized", "The admin token is not valid.")
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 0
    assert await db.fetchval("SELECT sum(credits_balance) FROM tenants") == 0


# -- what a tenant sees -------------------------------------------------------------------------


async def test_usage_shows_only_the_callers_balance_ledger_and_tokens(
    web: Running, db: asyncpg.Connection
) -> None:
    a, b = await web.create_tenant("A Co"), await web.create_tenant("B Co")
    a_id, b_id = uuid.UUID(a["id"]), uuid.UUID(b["id"])
    for tenant_id, amount, reason in (
        (a_id, 50, "a first"),
        (b_id, 900, "b only"),
        (a_id, 20, "a second"),
    ):
        response = await _credits(web, str(tenant_id), {"amount": amount, "reason": reason})
        assert response.status_code == 201, response.text
    async with db.transaction():
        assert await debit_reply(db, a_id, NUMBER_A, 7, 2) == 68
    for tenant_id, number, model, feature, tokens in (
        (a_id, NUMBER_A, "gpt-mini", "reply", (100, 20)),
        (a_id, NUMBER_A, "gpt-mini", "reply", (50, 10)),
        (a_id, NUMBER_A, "gemini-flash", "transcription", (300, 40)),
        (a_id, NUMBER_B, "gpt-mini", "reply", (1, 1)),
        (b_id, NUMBER_A, "gpt-mini", "reply", (7777, 8888)),
    ):
        await record_tokens(db, tenant_id, number, model, feature, *tokens)  # type: ignore[arg-type]
    # An older day of the same number, model and feature: summed with today's.
    await db.execute(
        "INSERT INTO token_usage (tenant_id, phone_number_id, model, feature, day, calls,"
        " input_tokens, output_tokens)"
        " VALUES ($1, $2, 'gpt-mini', 'reply', (now() AT TIME ZONE 'UTC')::date - 3, 4, 1000, 200)",
        a_id,
        NUMBER_A,
    )

    response = await web.client.get("/v1/usage", headers=_key(a))
    assert response.status_code == 200, response.text
    usage = response.json()
    assert usage["credits_balance"] == 68
    ledger = [
        (e["amount"], e["balance_before"], e["balance_after"], e["reason"], e["phone_number_id"])
        for e in usage["ledger"]
    ]
    assert ledger == [
        (-2, 70, 68, "reply", NUMBER_A),
        (20, 50, 70, "a second", None),
        (50, 0, 50, "a first", None),
    ]
    assert all(set(e) == {"id", *_LEDGER_FIELDS} for e in usage["ledger"])
    assert usage["tokens"] == [
        {
            "phone_number_id": NUMBER_A,
            "model": "gemini-flash",
            "feature": "transcription",
            "calls": 1,
            "input_tokens": 300,
            "output_tokens": 40,
        },
        {
            "phone_number_id": NUMBER_A,
            "model": "gpt-mini",
            "feature": "reply",
            "calls": 6,
            "input_tokens": 1150,
            "output_tokens": 230,
        },
        {
            "phone_number_id": NUMBER_B,
            "model": "gpt-mini",
            "feature": "reply",
            "calls": 1,
            "input_tokens": 1,
            "output_tokens": 1,
        },
    ]
    assert "7777" not in response.text and "b only" not in response.text

    theirs = (await web.client.get("/v1/usage", headers=_key(b))).json()
    assert theirs["credits_balance"] == 900
    assert [e["reason"] for e in theirs["ledger"]] == ["b only"]
    assert [(t["input_tokens"], t["output_tokens"]) for t in theirs["tokens"]] == [(7777, 8888)]

    newest = (await web.client.get("/v1/usage", params={"limit": 1}, headers=_key(a))).json()
    assert [e["reason"] for e in newest["ledger"]] == ["reply"]
    today = (await db.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")).isoformat()
    recent = await web.client.get("/v1/usage", params={"since": today}, headers=_key(a))
    assert [t["calls"] for t in recent.json()["tokens"]] == [1, 2, 1]
    assert len(recent.json()["ledger"]) == 3
    before = await web.client.get("/v1/usage", params={"until": "2000-01-01"}, headers=_key(a))
    assert before.json() == {"credits_balance": 68, "ledger": [], "tokens": []}
    far = await web.client.get(
        "/v1/usage", params={"since": "0001-01-01", "until": "9999-12-31"}, headers=_key(a)
    )
    assert far.json() == usage

    for params, code, message in (
        ({"limit": "0"}, "invalid_limit", "'limit' must be a whole number from 1 to 1000."),
        ({"limit": "1001"}, "invalid_limit", "'limit' must be a whole number from 1 to 1000."),
        ({"since": "yesterday"}, "invalid_date", "'since' must be a date, YYYY-MM-DD (UTC)."),
        ({"until": "2024-02-30"}, "invalid_date", "'until' must be a date, YYYY-MM-DD (UTC)."),
    ):
        bad = await web.client.get("/v1/usage", params=params, headers=_key(a))
        _error(bad, 400, code, message)
    anonymous = await web.client.get("/v1/usage")
    assert anonymous.status_code == 401


_LEDGER_FIELDS = (
    "amount",
    "balance_before",
    "balance_after",
    "reason",
    "phone_number_id",
    "created_at",
)


# -- the reply pipeline's calls -------------------------------------------------------------------


async def test_debit_reply_takes_credits_once_per_reply_and_never_below_zero(
    db: asyncpg.Connection,
) -> None:
    tenant_id = await _tenant(db, balance=5)
    assert await debit_reply(db, tenant_id, NUMBER_A, 1, 0) == 5  # free: no ledger row
    assert await _ledger(db, str(tenant_id)) == []

    assert await debit_reply(db, tenant_id, NUMBER_A, 1, 2) == 3
    assert await debit_reply(db, tenant_id, NUMBER_A, 1, 2) == 3  # the same reply: no-op
    assert await debit_reply(db, tenant_id, NUMBER_A, 2, 4) is None  # short: nothing changes
    assert await credits_balance(db, tenant_id) == 3
    assert await debit_reply(db, tenant_id, NUMBER_B, 3, 3) == 0
    assert await debit_reply(db, tenant_id, NUMBER_B, 4, 1) is None
    assert await credits_balance(db, tenant_id) == 0
    assert await _ledger(db, str(tenant_id)) == [
        (-2, 5, 3, "reply", NUMBER_A, 1),
        (-3, 3, 0, "reply", NUMBER_B, 3),
    ]
    # A repeated reply answers the balance as it is now, not as it was then.
    assert await debit_reply(db, tenant_id, NUMBER_A, 1, 2) == 0
    with pytest.raises(ValueError):
        await debit_reply(db, tenant_id, NUMBER_A, 5, -1)
    assert await credits_balance(db, uuid.uuid4()) == 0
    assert await debit_reply(db, uuid.uuid4(), NUMBER_A, 6, 1) is None


async def test_debit_reply_in_a_rolled_back_transaction_leaves_nothing(
    db: asyncpg.Connection,
) -> None:
    tenant_id = await _tenant(db, balance=5)
    with pytest.raises(RuntimeError):
        async with db.transaction():
            assert await debit_reply(db, tenant_id, NUMBER_A, 1, 2) == 3
            raise RuntimeError("the reply failed")
    assert await credits_balance(db, tenant_id) == 5
    assert await _ledger(db, str(tenant_id)) == []
    assert await debit_reply(db, tenant_id, NUMBER_A, 1, 2) == 3  # the retry pays once


async def test_two_replies_racing_for_the_last_credits_take_them_once(
    db: asyncpg.Connection, db_url: str
) -> None:
    tenant_id = await _tenant(db, balance=2)
    other = await connect(db_url)
    try:
        first = db.transaction()
        await first.start()
        assert await debit_reply(db, tenant_id, NUMBER_A, 1, 2) == 0
        async with other.transaction():
            # Waits for the first transaction's row lock, then sees the balance it left.
            second = asyncio.create_task(debit_reply(other, tenant_id, NUMBER_A, 2, 2))
            await asyncio.sleep(0.2)
            assert not second.done()
            await first.commit()
            assert await second is None
    finally:
        await other.close()
    assert await credits_balance(db, tenant_id) == 0
    assert await _ledger(db, str(tenant_id)) == [(-2, 2, 0, "reply", NUMBER_A, 1)]


async def test_record_tokens_adds_to_todays_row(db: asyncpg.Connection) -> None:
    tenant_id = await _tenant(db)
    await record_tokens(db, tenant_id, NUMBER_A, "gpt-mini", "reply", 10, 3)
    await record_tokens(db, tenant_id, NUMBER_A, "gpt-mini", "reply", 5, 0)
    await record_tokens(db, tenant_id, NUMBER_A, "gpt-mini", "vision", 1, 1)
    await record_tokens(db, tenant_id, NUMBER_A, "tts", "speech", 0, 9)
    rows = await db.fetch(
        "SELECT model, feature, day, calls, input_tokens, output_tokens FROM token_usage"
        " ORDER BY model, feature"
    )
    today: date = await db.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    assert [tuple(r) for r in rows] == [
        ("gpt-mini", "reply", today, 2, 15, 3),
        ("gpt-mini", "vision", today, 1, 1, 1),
        ("tts", "speech", today, 1, 0, 9),
    ]
    with pytest.raises(ValueError):
        await record_tokens(db, tenant_id, NUMBER_A, "m", "chat", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await record_tokens(db, tenant_id, NUMBER_A, "m", "reply", -1, 1)
