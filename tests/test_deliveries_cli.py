"""`wa-cloud deliveries show|replay`, run as the real command against the test's database while
the app's worker runs: what it prints, and what the database holds after."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import asyncpg

from tests.conftest import NUMBER_B, Running, corpus, process_env, wait_idle
from wa_cloud.config import Settings


async def deliveries(settings: Settings, *args: str) -> tuple[int, str, str]:
    """`python -m wa_cloud.cli deliveries ARGS` with the env a production process has."""
    env = process_env(settings)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wa_cloud.cli",
        "deliveries",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def store(app: Running, db: asyncpg.Connection, body: bytes) -> int:
    """Post a signed webhook body, wait for the worker; the new delivery's id."""
    assert (await app.post_webhook(body)).status_code == 200
    await wait_idle(db)
    return int(await db.fetchval("SELECT max(id) FROM deliveries"))


async def row(db: asyncpg.Connection, delivery_id: int) -> asyncpg.Record:
    found = await db.fetchrow(
        "SELECT d.state, d.attempts, d.last_error, q.code, q.reason, q.created_at"
        " FROM deliveries d LEFT JOIN quarantine q ON q.delivery_id = d.id WHERE d.id = $1",
        delivery_id,
    )
    assert found is not None
    return found


async def index_counts(db: asyncpg.Connection) -> dict[str, int]:
    return {
        table: await db.fetchval(f"SELECT count(*) FROM {table}")
        for table in ("messages", "contacts", "statuses", "events")
    }


# show ------------------------------------------------------------------------------------------
async def test_show_prints_a_delivery_with_its_error(app: Running, db: asyncpg.Connection) -> None:
    garbage = corpus("invalid/not_json.json")
    quarantined = await store(app, db, garbage)
    code, out, err = await deliveries(app.settings, "show", str(quarantined))
    assert code == 0, err
    assert f"delivery {quarantined}" in out
    assert "state        quarantined" in out
    assert "quarantine   invalid_json at " in out
    assert f"body ({len(garbage)} bytes, not JSON" in out
    assert garbage[:40].decode() in out

    code, out, err = await deliveries(app.settings, "show", str(quarantined), "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["id"] == quarantined and shown["state"] == "quarantined"
    assert shown["quarantine"]["code"] == "invalid_json" and shown["quarantine"]["reason"]
    assert shown["last_error"] == shown["quarantine"]["reason"]
    assert shown["body_size"] == len(garbage)
    assert shown["body_excerpt"].startswith(garbage[:40].decode())

    # A JSON body is pretty-printed; an orphaned message is processed without any tenant.
    orphan = corpus("orphan/text_unknown_number.json")
    processed = await store(app, db, orphan)
    code, out, err = await deliveries(app.settings, "show", str(processed))
    assert code == 0, err
    assert "state        processed" in out and "quarantine" not in out
    assert f"body ({len(orphan)} bytes, JSON):" in out
    assert '\n  "object": "whatsapp_business_account",\n' in out
    code, out, _ = await deliveries(app.settings, "show", str(processed), "--json")
    assert json.loads(out)["body"] == json.loads(orphan)

    # Bytes from outside never reach the terminal as control sequences.
    hostile = await store(app, db, b"\x1b]0;pwned\x07\x1b[2J not json")
    code, out, _ = await deliveries(app.settings, "show", str(hostile))
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "\\u001b]0;pwned\\u0007" in out

    code, out, err = await deliveries(app.settings, "show", "987654321")
    assert code == 1
    assert "no delivery 987654321" in err and out == ""


# replay ----------------------------------------------------------------------------------------
async def test_replay_after_a_fix_indexes_the_delivery_once(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    # A contact row that breaks the index for one sender: quarantined after its retries.
    document = json.loads(corpus("messages/text.json"))
    message = document["entry"][0]["changes"][0]["value"]["messages"][0]
    await db.execute(
        "ALTER TABLE contacts ADD CONSTRAINT test_broken_index"
        f" CHECK (wa_id <> $${message['from']}$$)"
    )
    assert (await app.post_webhook(json.dumps(document).encode())).status_code == 200
    async with asyncio.timeout(30):
        while await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'"):
            # Skip the backoff waits: the retries are not what is under test.
            await db.execute("UPDATE deliveries SET run_after = now() WHERE state = 'pending'")
            await asyncio.sleep(0.1)
    delivery_id = int(await db.fetchval("SELECT id FROM deliveries"))
    before = await row(db, delivery_id)
    assert (before["state"], before["code"]) == ("quarantined", "processing_failed")
    code, out, _ = await deliveries(app.settings, "show", str(delivery_id))
    assert code == 0 and "test_broken_index" in out

    await db.execute("ALTER TABLE contacts DROP CONSTRAINT test_broken_index")  # the fix

    code, out, err = await deliveries(app.settings, "replay", "--dry-run", str(delivery_id))
    assert code == 0, err
    assert "would replay 1 deliveries" in out
    assert f"  {delivery_id}  quarantined " in out and "processing_failed" in out
    assert await row(db, delivery_id) == before  # nothing changed

    notified: list[str] = []
    await db.add_listener("wa_deliveries", lambda *args: notified.append(args[3]))
    code, out, err = await deliveries(app.settings, "replay", str(delivery_id))
    assert code == 0, err
    assert "replayed 1 deliveries" in out
    await wait_idle(db)
    after = await row(db, delivery_id)
    assert (after["state"], after["attempts"], after["code"]) == ("processed", 1, None)
    assert "test_broken_index" in after["last_error"]  # the old reason stays as history
    assert notified == ["1"]  # the workers were woken, not left to their poll
    assert await db.fetchval("SELECT wamid FROM messages") == message["id"]
    assert await db.fetchval("SELECT count(*) FROM messages") == 1
    audit = await db.fetchrow(
        "SELECT actor, detail FROM audit_log WHERE action = $1", "deliveries.replayed"
    )
    assert audit["actor"] == "cli"
    assert audit["detail"] == {"count": 1, "ids": [delivery_id], "since": None}


async def test_replaying_a_partly_indexed_delivery_doubles_nothing(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    delivery_id = await store(app, db, corpus("batch/three_entries_two_changes.json"))
    whole = await index_counts(db)
    wamids = {r["wamid"] for r in await db.fetch("SELECT wamid FROM messages")}
    assert whole["messages"] == 15
    # As if a worker had indexed number A's messages and died before number B's, its delivery
    # then quarantined.
    await db.execute("DELETE FROM messages WHERE phone_number_id = $1", NUMBER_B)
    await db.execute(
        "UPDATE deliveries SET state = 'quarantined', processed_at = now(), attempts = 9"
        " WHERE id = $1",
        delivery_id,
    )
    await db.execute(
        "INSERT INTO quarantine (delivery_id, code, reason) VALUES ($1, 'worker_died', 'x')",
        delivery_id,
    )
    assert (await index_counts(db))["messages"] == 8

    code, out, err = await deliveries(app.settings, "replay", str(delivery_id))
    assert code == 0, err
    assert "replayed 1 deliveries" in out
    await wait_idle(db)
    assert (await row(db, delivery_id))["state"] == "processed"
    assert await index_counts(db) == whole
    assert {r["wamid"] for r in await db.fetch("SELECT wamid FROM messages")} == wamids


async def test_replay_refuses_what_is_not_quarantined_and_changes_nothing(
    app: Running, db: asyncpg.Connection
) -> None:
    processed = await store(app, db, corpus("orphan/text_unknown_number.json"))
    quarantined = await store(app, db, corpus("invalid/not_json.json"))
    cleared = await store(app, db, corpus("invalid/wrong_object.json"))
    await db.execute("UPDATE deliveries SET body = ''::bytea WHERE id = $1", cleared)
    rows_before = [await row(db, i) for i in (processed, quarantined, cleared)]

    cases = [
        ([processed, quarantined], {processed: "it is processed, not quarantined"}),
        ([quarantined, 987654321], {987654321: "no such delivery"}),
        ([cleared], {cleared: "cleared by retention"}),
    ]
    for ids, refusals in cases:
        code, out, err = await deliveries(app.settings, "replay", *map(str, ids))
        assert code == 1, (ids, out, err)
        for delivery_id, why in refusals.items():
            assert f"delivery {delivery_id} not replayed: " in err and why in err, err
        assert "nothing was replayed" in err
    assert [await row(db, i) for i in (processed, quarantined, cleared)] == rows_before
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_replay_since_takes_every_recent_quarantine(
    app: Running, db: asyncpg.Connection
) -> None:
    recent = await store(app, db, corpus("invalid/not_json.json"))
    older = await store(app, db, corpus("invalid/not_envelope.json"))
    await db.execute(
        "UPDATE quarantine SET created_at = now() - interval '3 hours' WHERE delivery_id = $1",
        older,
    )
    await store(app, db, corpus("orphan/text_unknown_number.json"))  # processed: never taken
    first = {i: await row(db, i) for i in (recent, older)}

    code, out, err = await deliveries(app.settings, "replay", "--since", "2h", "--dry-run")
    assert code == 0, err
    assert "would replay 1 deliveries" in out and f"  {recent}  " in out
    assert f"  {older}  " not in out
    assert {i: await row(db, i) for i in (recent, older)} == first

    code, out, err = await deliveries(app.settings, "replay", "--since", "1d")
    assert code == 0, err
    assert "replayed 2 deliveries" in out
    await wait_idle(db)
    # The bodies are still not webhooks: quarantined again, with a fresh record of why.
    for delivery_id, code_name in ((recent, "invalid_json"), (older, "not_whatsapp_envelope")):
        again = await row(db, delivery_id)
        assert (again["state"], again["attempts"], again["code"]) == (
            "quarantined",
            1,
            code_name,
        )
        assert again["created_at"] > first[delivery_id]["created_at"]
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'processed'") == 1

    for args in (["--since", "yesterday"], [], ["1", "--since", "1h"]):
        code, _, err = await deliveries(app.settings, "replay", *args)
        assert code == 2, args
        assert err
