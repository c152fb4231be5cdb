"""Every corpus payload through the real endpoint and worker; what lands in the database is
checked against an independent reading of the payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import CORPUS, NUMBER_A, NUMBER_B, Running, corpus, wait_idle

OURS = {NUMBER_A, NUMBER_B}
FILES = sorted(p for p in CORPUS.glob("*/*.json") if p.parent.name != "invalid")


def _expected(document: dict[str, Any]) -> dict[str, set[Any]]:
    """What the index should hold, read straight from Meta's shape."""
    messages: set[tuple[str, str, str]] = set()
    statuses: set[tuple[str, str]] = set()
    events: set[tuple[str, bool]] = set()  # (field, orphaned)
    for entry in document["entry"]:
        for change in entry.get("changes", []):
            value = change.get("value", {})
            number = value.get("metadata", {}).get("phone_number_id")
            if change["field"] != "messages":
                events.add((change["field"], False))
                continue
            for message in value.get("messages", []):
                if number in OURS:
                    messages.add((number, message["id"], message["type"]))
                else:
                    events.add(("messages", True))
            for status in value.get("statuses", []):
                if number in OURS:
                    statuses.add((status["id"], status["status"]))
                else:
                    events.add(("messages", True))
            if value.get("errors"):
                events.add(("messages", number not in OURS))
    return {"messages": messages, "statuses": statuses, "events": events}


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_corpus_file_is_indexed(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection, path: Path
) -> None:
    body = path.read_bytes()
    assert (await app.post_webhook(body)).status_code == 200
    await wait_idle(db)
    assert await db.fetchval("SELECT state FROM deliveries") == "processed"

    expected = _expected(json.loads(body))
    rows = await db.fetch("SELECT phone_number_id, wamid, type FROM messages")
    assert {(r["phone_number_id"], r["wamid"], r["type"]) for r in rows} == expected["messages"]
    assert len(rows) == len(expected["messages"])
    rows = await db.fetch("SELECT wamid, status FROM statuses")
    assert {(r["wamid"], r["status"]) for r in rows} == expected["statuses"]
    rows = await db.fetch("SELECT field, orphaned FROM events")
    assert {(r["field"], r["orphaned"]) for r in rows} == expected["events"]
    # Everything for a number the tenant owns is the tenant's.
    assert (
        await db.fetchval("SELECT count(*) FROM messages WHERE tenant_id <> $1::uuid", tenant["id"])
        == 0
    )


async def _post(app: Running, db: asyncpg.Connection, name: str) -> None:
    assert (await app.post_webhook(corpus(name))).status_code == 200
    await wait_idle(db)


async def test_every_inbound_message_type_keeps_its_text_and_raw(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    for path in sorted((CORPUS / "messages").glob("*.json")):
        assert (await app.post_webhook(path.read_bytes())).status_code == 200
    await wait_idle(db)
    rows = {r["type"]: r for r in await db.fetch("SELECT type, text, payload FROM messages")}
    assert rows["text"]["payload"]["text"]["body"]
    assert rows["interactive"]["text"]
    assert rows["button"]["text"]
    assert rows["order"]["text"] is not None
    assert rows["location"]["text"]
    # Unknown types are kept raw with Meta's own type string.
    unknown = json.loads(corpus("messages/unknown_type.json"))
    raw = unknown["entry"][0]["changes"][0]["value"]["messages"][0]
    assert rows[raw["type"]]["payload"] == raw


async def test_non_ascii_text_is_kept_exactly(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    await _post(app, db, "messages/text_non_ascii.json")
    document = json.loads(corpus("messages/text_non_ascii.json"))
    sent = document["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"]
    assert await db.fetchval("SELECT text FROM messages") == sent
    response = await app.client.get(
        f"/v1/contacts/{document['entry'][0]['changes'][0]['value']['messages'][0]['from']}"
        "/messages",
        params={"phone_number_id": NUMBER_A},
        headers={"authorization": f"Bearer {tenant['api_key']}"},
    )
    assert response.json()["data"][0]["text"] == sent


async def test_username_only_contact_is_keyed_by_user_id(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    await _post(app, db, "messages/username_only.json")
    value = json.loads(corpus("messages/username_only.json"))["entry"][0]["changes"][0]["value"]
    contact = value["contacts"][0]
    row = await db.fetchrow("SELECT wa_id, user_id, parent_user_id, username, name FROM contacts")
    assert row["wa_id"] is None
    assert row["user_id"] == contact["user_id"] == value["messages"][0]["from_user_id"]
    assert row["parent_user_id"] == contact["parent_user_id"]
    assert row["username"] == contact["profile"]["username"]
    assert row["name"] == contact["profile"]["name"]
    listed = await app.client.get(
        f"/v1/contacts/{contact['user_id']}/messages",
        params={"phone_number_id": NUMBER_A},
        headers={"authorization": f"Bearer {tenant['api_key']}"},
    )
    assert listed.status_code == 200
    assert [m["wamid"] for m in listed.json()["data"]] == [value["messages"][0]["id"]]


async def test_contact_seen_by_wa_id_then_user_id_is_one_contact(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    both = json.loads(corpus("messages/username_with_wa_id.json"))
    value = both["entry"][0]["changes"][0]["value"]
    wa_id = value["contacts"][0]["wa_id"]
    # First a message that names only the phone number, then the one with both identifiers.
    first = json.loads(json.dumps(both))
    first_value = first["entry"][0]["changes"][0]["value"]
    first_value["contacts"][0].pop("user_id")
    first_value["messages"][0].pop("from_user_id", None)
    first_value["messages"][0]["id"] += "-first"
    assert (await app.post_webhook(json.dumps(first).encode())).status_code == 200
    assert (await app.post_webhook(json.dumps(both).encode())).status_code == 200
    await wait_idle(db)
    rows = await db.fetch("SELECT wa_id, user_id FROM contacts")
    assert [(r["wa_id"], r["user_id"]) for r in rows] == [(wa_id, value["contacts"][0]["user_id"])]
    assert await db.fetchval("SELECT count(DISTINCT contact_id) FROM messages") == 1


async def test_last_inbound_at_is_the_window_and_only_moves_forward(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    document = json.loads(corpus("messages/text.json"))
    message = document["entry"][0]["changes"][0]["value"]["messages"][0]
    newer = int(message["timestamp"]) + 3600
    late = json.loads(json.dumps(document))
    late_message = late["entry"][0]["changes"][0]["value"]["messages"][0]
    late_message["id"] += "-newer"
    late_message["timestamp"] = str(newer)
    # The newer message arrives first; the older one must not move the window back.
    assert (await app.post_webhook(json.dumps(late).encode())).status_code == 200
    await wait_idle(db)
    assert (await app.post_webhook(json.dumps(document).encode())).status_code == 200
    await wait_idle(db)
    assert await db.fetchval("SELECT last_inbound_at FROM contacts") == datetime.fromtimestamp(
        newer, UTC
    )


async def test_system_message_does_not_open_the_window(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    await _post(app, db, "messages/system_user_changed_number.json")
    assert await db.fetchval("SELECT count(*) FROM messages WHERE type = 'system'") == 1
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE last_inbound_at IS NOT NULL") == 0


async def test_failed_status_keeps_errors_and_pricing_is_kept(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    await _post(app, db, "statuses/failed.json")
    await _post(app, db, "statuses/sent_with_pricing.json")
    failed = json.loads(corpus("statuses/failed.json"))
    raw = failed["entry"][0]["changes"][0]["value"]["statuses"][0]
    row = await db.fetchrow("SELECT errors, payload FROM statuses WHERE status = 'failed'")
    assert row["errors"] == raw["errors"]
    assert row["errors"][0]["code"] == 131047
    priced = json.loads(corpus("statuses/sent_with_pricing.json"))
    pricing = priced["entry"][0]["changes"][0]["value"]["statuses"][0]["pricing"]
    assert await db.fetchval("SELECT pricing FROM statuses WHERE pricing IS NOT NULL") == pricing


async def test_template_status_update_belongs_to_the_wabas_tenant(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    await _post(app, db, "fields/message_template_status_update.json")
    row = await db.fetchrow("SELECT tenant_id, field, kind, orphaned, payload FROM events")
    assert str(row["tenant_id"]) == tenant["id"]
    assert row["field"] == "message_template_status_update"
    assert row["kind"] == "APPROVED"
    assert row["orphaned"] is False
    document = json.loads(corpus("fields/message_template_status_update.json"))
    assert row["payload"] == document["entry"][0]["changes"][0]
