"""Duplicates, reordering, batches and orphans: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from tests.conftest import NUMBER_A, NUMBER_B, Running, corpus, wait_idle


async def test_same_delivery_five_times_gives_one_message(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    body = corpus("batch/mixed.json")
    responses = await asyncio.gather(*(app.post_webhook(body) for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    await wait_idle(db)
    value = json.loads(body)["entry"][0]["changes"][0]["value"]
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'processed'") == 5
    assert await db.fetchval("SELECT count(*) FROM messages") == len(value["messages"])
    assert await db.fetchval("SELECT count(*) FROM statuses") == len(value["statuses"])
    assert await db.fetchval("SELECT count(*) FROM contacts") == len(value["contacts"])


async def _outbound(db: asyncpg.Connection, tenant_id: str, wamid: str) -> None:
    """An outbound message as the outbox records it once Meta accepted it."""
    await db.execute(
        "INSERT INTO messages (tenant_id, phone_number_id, wamid, direction, type, payload, status)"
        " VALUES ($1::uuid, $2, $3, 'out', 'text', '{}'::jsonb, 'accepted')",
        tenant_id,
        NUMBER_A,
        wamid,
    )


def _status(wamid: str, status: str, ts: int, **extra: Any) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": NUMBER_A,
                                },
                                "statuses": [
                                    {
                                        "id": wamid,
                                        "status": status,
                                        "timestamp": str(ts),
                                        "recipient_id": "16505551234",
                                        **extra,
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


async def test_reordered_statuses_only_move_forward(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    wamid = "wamid.OUT-reorder"
    await _outbound(db, tenant["id"], wamid)
    for status, ts in (("read", 30), ("sent", 10), ("delivered", 20), ("read", 30), ("sent", 10)):
        assert (await app.post_webhook(_status(wamid, status, 1763700000 + ts))).status_code == 200
        await wait_idle(db)
        assert await db.fetchval("SELECT status FROM messages WHERE wamid = $1", wamid) == "read"
    assert await db.fetchval("SELECT count(*) FROM statuses WHERE wamid = $1", wamid) == 3


async def test_failed_after_delivered_is_recorded_with_errors(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    wamid = "wamid.OUT-fails"
    await _outbound(db, tenant["id"], wamid)
    errors = [
        {
            "code": 131026,
            "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Receiver is incapable of receiving this message"},
        }
    ]
    await app.post_webhook(_status(wamid, "delivered", 1763700020))
    await app.post_webhook(_status(wamid, "failed", 1763700030, errors=errors))
    await wait_idle(db)
    row = await db.fetchrow("SELECT status, errors FROM messages WHERE wamid = $1", wamid)
    assert row["status"] == "failed"
    assert row["errors"] == errors


async def test_batch_of_entries_and_changes_indexes_every_message(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    body = corpus("batch/three_entries_two_changes.json")
    document = json.loads(body)
    assert len(document["entry"]) == 3
    assert all(len(e["changes"]) == 2 for e in document["entry"])
    wamids = {
        (c["value"]["metadata"]["phone_number_id"], m["id"])
        for e in document["entry"]
        for c in e["changes"]
        for m in c["value"]["messages"]
    }
    assert len(wamids) >= 12
    assert (await app.post_webhook(body)).status_code == 200
    await wait_idle(db)
    rows = await db.fetch("SELECT phone_number_id, wamid FROM messages")
    assert {(r["phone_number_id"], r["wamid"]) for r in rows} == wamids
    assert {r["phone_number_id"] for r in rows} == {NUMBER_A, NUMBER_B}


async def test_orphaned_number_is_kept_and_reported(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    body = corpus("orphan/text_unknown_number.json")
    assert (await app.post_webhook(body)).status_code == 200
    assert (await app.post_webhook(body)).status_code == 200
    await wait_idle(db)
    assert await db.fetchval("SELECT count(*) FROM messages") == 0
    row = await db.fetchrow(
        "SELECT tenant_id, phone_number_id, kind, orphaned, payload FROM events"
    )
    assert row["tenant_id"] is None
    assert row["orphaned"] is True
    assert row["phone_number_id"] == "999999999999999"
    message = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]
    assert row["payload"] == message
    assert await db.fetchval("SELECT count(*) FROM events") == 1  # the repeat is not doubled
    metrics = (await app.client.get("/metrics")).text
    assert "wa_orphaned_events 1" in metrics.splitlines()


async def test_a_failing_delivery_is_retried_then_quarantined_without_blocking_others(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    # A contact row that breaks the index for one sender: its CHECK fails on every attempt.
    document = json.loads(corpus("messages/text.json"))
    message = document["entry"][0]["changes"][0]["value"]["messages"][0]
    await db.execute(
        "ALTER TABLE contacts ADD CONSTRAINT test_no_such_sender"
        f" CHECK (wa_id <> $${message['from']}$$)"
    )
    await db.execute("UPDATE deliveries SET run_after = now()")
    assert (await app.post_webhook(json.dumps(document).encode())).status_code == 200
    assert (await app.post_webhook(corpus("messages/text_non_ascii.json"))).status_code == 200
    async with asyncio.timeout(30):
        while await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'"):
            # Skip the backoff waits: the retries themselves are what is under test.
            await db.execute("UPDATE deliveries SET run_after = now() WHERE state = 'pending'")
            await asyncio.sleep(0.1)
    states = dict(await db.fetch("SELECT state, count(*) FROM deliveries GROUP BY state"))
    assert states == {"processed": 1, "quarantined": 1}
    row = await db.fetchrow(
        "SELECT d.attempts, q.code, q.reason FROM deliveries d JOIN quarantine q"
        " ON q.delivery_id = d.id"
    )
    assert row["attempts"] == app.settings.worker_max_attempts
    assert row["code"] == "processing_failed"
    assert "test_no_such_sender" in row["reason"]
    assert await db.fetchval("SELECT count(*) FROM messages") == 1


async def test_delivered_processed_after_failed_does_not_undo_it(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    wamid = "wamid.OUT-failed-first"
    await _outbound(db, tenant["id"], wamid)
    errors = [{"code": 131026, "title": "Message undeliverable", "message": "undeliverable"}]
    await app.post_webhook(_status(wamid, "failed", 1763700030, errors=errors))
    await wait_idle(db)
    await app.post_webhook(_status(wamid, "delivered", 1763700020))
    await wait_idle(db)
    row = await db.fetchrow("SELECT status, errors FROM messages WHERE wamid = $1", wamid)
    assert (row["status"], row["errors"]) == ("failed", errors)
