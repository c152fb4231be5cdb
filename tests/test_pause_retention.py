"""Conversations and the assistant: pausing and resuming it from the API, a person's send taking
a conversation over, and retention purging conversations past the number's retention_hours."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Meta, pool_of
from wa_cloud.config import Settings
from wa_cloud.retention import run_retention

CUSTOMER = "16505551234"
HOUR = timedelta(hours=1)


def _error(response: httpx.Response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": {"code": code, "message": message}}


async def _pause(
    meta: Meta, body: dict[str, Any], contact: str = CUSTOMER, *, action: str = "pause"
) -> httpx.Response:
    return await meta.app.client.post(
        f"/v1/contacts/{contact}/{action}", json=body, headers=meta.tenant()
    )


async def _contact(db: asyncpg.Connection, wa_id: str = CUSTOMER) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT bot_paused, paused_until, paused_by, paused_until - now() AS left"
        " FROM contacts WHERE wa_id = $1",
        wa_id,
    )
    assert row is not None
    return row


def _about(left: timedelta | None, minutes: float) -> bool:
    return left is not None and abs(left - timedelta(minutes=minutes)) < timedelta(seconds=10)


async def _listed(meta: Meta) -> dict[str, Any]:
    response = await meta.app.client.get(
        "/v1/contacts", params={"phone_number_id": NUMBER_A}, headers=meta.tenant()
    )
    assert response.status_code == 200, response.text
    (contact,) = response.json()["data"]
    assert isinstance(contact, dict)
    return contact


# -- pause and resume ---------------------------------------------------------------------------


async def test_pause_and_resume_a_conversation(meta: Meta, db: asyncpg.Connection) -> None:
    await meta.customer_writes("hello")
    assert (await _listed(meta))["bot_paused"] is False
    assert (await _listed(meta))["paused_until"] is None

    until_resumed = await _pause(meta, {"phone_number_id": NUMBER_A})
    assert until_resumed.status_code == 200, until_resumed.text
    shown = until_resumed.json()
    assert shown == await _listed(meta)
    assert set(shown) == {
        "wa_id",
        "user_id",
        "name",
        "username",
        "last_inbound_at",
        "window_open",
        "window_expires_at",
        "bot_paused",
        "paused_until",
        "tags",
        "notes",
        "fields",
    }
    assert shown["wa_id"] == CUSTOMER and shown["window_open"] is True
    assert shown["bot_paused"] is True and shown["paused_until"] is None
    row = await _contact(db)
    assert (row["bot_paused"], row["paused_until"], row["paused_by"]) == (True, None, "api")

    for_a_while = await _pause(meta, {"phone_number_id": NUMBER_A, "minutes": 10})
    assert for_a_while.status_code == 200, for_a_while.text
    row = await _contact(db)
    assert row["bot_paused"] and row["paused_by"] == "api" and _about(row["left"], 10)
    assert for_a_while.json()["bot_paused"] is True
    assert datetime.fromisoformat(for_a_while.json()["paused_until"]) == row["paused_until"]
    fractional = await _pause(meta, {"phone_number_id": NUMBER_A, "minutes": 0.5})
    assert fractional.status_code == 200 and _about((await _contact(db))["left"], 0.5)

    # A pause past its end is no pause: the contact shows the assistant answering again.
    await db.execute(
        "UPDATE contacts SET paused_until = now() - interval '1 minute' WHERE wa_id = $1", CUSTOMER
    )
    expired = await _listed(meta)
    assert expired["bot_paused"] is False and expired["paused_until"] is None

    await _pause(meta, {"phone_number_id": NUMBER_A, "minutes": 5})
    resumed = await _pause(meta, {"phone_number_id": NUMBER_A}, action="resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["bot_paused"] is False and resumed.json()["paused_until"] is None
    assert resumed.json() == await _listed(meta)
    row = await _contact(db)
    assert (row["bot_paused"], row["paused_until"], row["paused_by"]) == (False, None, None)

    audit = await db.fetch(
        "SELECT action, actor, detail FROM audit_log WHERE action LIKE 'contact.%' ORDER BY id"
    )
    actor = f"tenant:{meta.tenant_id}"
    assert [(r["action"], r["actor"], r["detail"]) for r in audit] == [
        ("contact.paused", actor, {"phone_number_id": NUMBER_A, "contact": CUSTOMER, "minutes": m})
        for m in (None, 10.0, 0.5, 5.0)
    ] + [("contact.resumed", actor, {"phone_number_id": NUMBER_A, "contact": CUSTOMER})]


async def test_pause_refuses_bad_bodies_and_other_tenants_contacts(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await meta.customer_writes("hello")
    minutes = "'minutes' must be a number above 0 and at most 525600."
    for body, code, message in (
        ({"phone_number_id": NUMBER_A, "minutes": 0}, "invalid_field", minutes),
        ({"phone_number_id": NUMBER_A, "minutes": -5}, "invalid_field", minutes),
        ({"phone_number_id": NUMBER_A, "minutes": 525_601}, "invalid_field", minutes),
        ({"phone_number_id": NUMBER_A, "minutes": "5"}, "invalid_field", minutes),
        ({"phone_number_id": NUMBER_A, "minutes": True}, "invalid_field", minutes),
        ({}, "missing_field", "'phone_number_id' is required."),
        ({"phone_number_id": "abc"}, "invalid_field", "'phone_number_id' must be digits only."),
        ({"phone_number_id": NUMBER_A, "for": 1}, "unknown_field", "Unknown field(s): for."),
    ):
        _error(await _pause(meta, body), 422, code, message)
    _error(
        await _pause(meta, {"phone_number_id": NUMBER_A, "minutes": 5}, action="resume"),
        422,
        "unknown_field",
        "Unknown field(s): minutes.",
    )
    for raw in (b"NaN", b"Infinity", b"1" + b"0" * 40):
        odd = await meta.app.client.post(
            f"/v1/contacts/{CUSTOMER}/pause",
            content=b'{"phone_number_id": "%s", "minutes": %s}' % (NUMBER_A.encode(), raw),
            headers=meta.tenant(),
        )
        _error(odd, 422, "invalid_field", minutes)
    not_json = await meta.app.client.post(
        f"/v1/contacts/{CUSTOMER}/pause", content=b"{", headers=meta.tenant()
    )
    _error(not_json, 400, "invalid_json", "The body is not valid JSON.")
    nobody = await _pause(meta, {"phone_number_id": NUMBER_A}, contact="19995550000")
    _error(nobody, 404, "not_found", "No contact with that wa_id or user_id on that number.")

    # Another tenant, with a number of its own, names this tenant's contact.
    other = await meta.app.create_tenant("Other Co")
    added = await meta.app.add_number(other["api_key"], NUMBER_B, "102290129349999")
    assert added.status_code == 201, added.text
    for action in ("pause", "resume"):
        for number, message in (
            (NUMBER_A, "No number with that phone_number_id is yours."),
            (NUMBER_B, "No contact with that wa_id or user_id on that number."),
        ):
            response = await meta.app.client.post(
                f"/v1/contacts/{CUSTOMER}/{action}",
                json={"phone_number_id": number},
                headers={"authorization": f"Bearer {other['api_key']}"},
            )
            _error(response, 404, "not_found", message)
    row = await _contact(db)
    assert (row["bot_paused"], row["paused_until"], row["paused_by"]) == (False, None, None)
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'contact.%'") == 0

    off = await meta.app.client.patch(
        f"/v1/admin/tenants/{meta.tenant_id}", json={"active": False}, headers=meta.app.admin()
    )
    assert off.status_code == 200
    inactive = await _pause(meta, {"phone_number_id": NUMBER_A})
    _error(inactive, 403, "tenant_inactive", "This tenant is deactivated.")


# -- a person takes the conversation over -------------------------------------------------------


async def _send(meta: Meta, **extra: Any) -> httpx.Response:
    response = await meta.send(to=CUSTOMER, type="text", text={"body": "a person here"}, **extra)
    assert response.status_code in (200, 202), response.text
    return response


async def _bot(db: asyncpg.Connection, tenant_id: str, minutes: float) -> None:
    await db.execute(
        "INSERT INTO bots (phone_number_id, tenant_id, instructions, human_takeover_minutes)"
        " VALUES ($1, $2::uuid, 'Be brief.', $3) ON CONFLICT (phone_number_id) DO UPDATE"
        " SET tenant_id = excluded.tenant_id,"
        " human_takeover_minutes = excluded.human_takeover_minutes",
        NUMBER_A,
        tenant_id,
        minutes,
    )


async def _resume(db: asyncpg.Connection) -> None:
    await db.execute(
        "UPDATE contacts SET bot_paused = false, paused_until = NULL, paused_by = NULL"
        " WHERE wa_id = $1",
        CUSTOMER,
    )


async def test_a_send_through_the_api_takes_the_conversation_over(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await meta.customer_writes("hello")
    sent = await _send(meta)
    assert sent.status_code == 202
    author = await db.fetchval("SELECT author FROM messages WHERE id = $1::uuid", sent.json()["id"])
    assert author == "human"
    # No bots row: 30 minutes.
    row = await _contact(db)
    assert row["bot_paused"] and row["paused_by"] == "human" and _about(row["left"], 30)
    assert (await _listed(meta))["bot_paused"] is True

    # The number's own setting, from its bots row of this tenant.
    await _bot(db, meta.tenant_id, 90)
    await _send(meta)
    assert _about((await _contact(db))["left"], 90)
    # A shorter takeover never shortens a longer pause (its end and who asked stay).
    await _pause(meta, {"phone_number_id": NUMBER_A, "minutes": 200})
    await _send(meta)
    row = await _contact(db)
    assert row["paused_by"] == "api" and _about(row["left"], 200)
    # ... and a pause until resumed stays until resumed.
    await _pause(meta, {"phone_number_id": NUMBER_A})
    await _send(meta)
    row = await _contact(db)
    assert (row["bot_paused"], row["paused_until"], row["paused_by"]) == (True, None, "api")
    # An expired pause is replaced by the takeover.
    await db.execute(
        "UPDATE contacts SET paused_until = now() - interval '1 hour', paused_by = 'api'"
        " WHERE wa_id = $1",
        CUSTOMER,
    )
    await _send(meta)
    row = await _contact(db)
    assert row["paused_by"] == "human" and _about(row["left"], 90)

    # 0: a person's sends never pause the assistant.
    await _resume(db)
    await _bot(db, meta.tenant_id, 0)
    await _send(meta)
    row = await _contact(db)
    assert (row["bot_paused"], row["paused_until"], row["paused_by"]) == (False, None, None)

    # A bots row of another tenant (a previous owner's) is not this tenant's setting: 30.
    other = await meta.app.create_tenant("Previous Owner")
    await _bot(db, other["id"], 0)
    await _send(meta)
    row = await _contact(db)
    assert row["paused_by"] == "human" and _about(row["left"], 30)


async def test_a_repeated_send_does_not_take_the_conversation_over_again(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await meta.customer_writes("hello")
    first = await _send(meta, idempotency_key="order-42")
    assert first.status_code == 202
    assert (await _contact(db))["bot_paused"] is True
    await _resume(db)
    again = await _send(meta, idempotency_key="order-42")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    row = await _contact(db)
    assert (row["bot_paused"], row["paused_until"], row["paused_by"]) == (False, None, None)
    assert await db.fetchval("SELECT count(*) FROM messages WHERE author = 'human'") == 1


# -- retention ----------------------------------------------------------------------------------


async def _number(
    db: asyncpg.Connection, tenant_id: uuid.UUID, number: str, retention: int | None = None
) -> None:
    await db.execute(
        "INSERT INTO numbers (phone_number_id, tenant_id, waba_id) VALUES ($1, $2, $3)",
        number,
        tenant_id,
        WABA,
    )
    if retention is not None:
        await db.execute(
            "INSERT INTO bots (phone_number_id, tenant_id, instructions, retention_hours)"
            " VALUES ($1, $2, 'x', $3)",
            number,
            tenant_id,
            retention,
        )


async def _message(
    db: asyncpg.Connection,
    tenant_id: uuid.UUID,
    number: str,
    age: timedelta,
    *,
    direction: str = "in",
    status: str = "received",
    media: bool = False,
) -> uuid.UUID:
    message_id: uuid.UUID = await db.fetchval(
        "INSERT INTO messages (tenant_id, phone_number_id, wamid, direction, type, text,"
        " media_text, payload, request, fallback_template, status, created_at, author)"
        " VALUES ($1, $2, 'wamid.' || gen_random_uuid(), $3, 'image', 'my address is ...',"
        ' \'a photo of a passport\', \'{"image": {"caption": "x"}}\', $4, $5, $6,'
        " now() - $7::interval, $8)"
        " RETURNING id",
        tenant_id,
        number,
        direction,
        {"to": CUSTOMER, "text": {"body": "x"}} if direction == "out" else None,
        {"name": "hello"} if direction == "out" else None,
        status,
        age,
        "human" if direction == "out" else None,
    )
    if media:
        await db.execute(
            "INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, state, content)"
            " VALUES ($1, $2, $3, $4, 'stored', 'jpeg bytes')",
            tenant_id,
            number,
            f"media-{message_id}",
            message_id,
        )
    return message_id


PURGED_COLUMNS = (
    "id, wamid, direction, type, status, created_at, author, text, media_text, payload, request,"
    " fallback_template, purged_at IS NOT NULL AS purged"
)


async def test_retention_purges_conversations_past_each_numbers_retention_hours(
    db: asyncpg.Connection, settings: Settings
) -> None:
    tenant_id = await db.fetchval("INSERT INTO tenants (name) VALUES ('T') RETURNING id")
    previous_owner = await db.fetchval("INSERT INTO tenants (name) VALUES ('P') RETURNING id")
    default, kept, short, stale = (f"10654035224296{i}" for i in range(4))
    await _number(db, tenant_id, default)  # no bots row: 24 hours
    await _number(db, tenant_id, kept, retention=0)  # kept for ever
    await _number(db, tenant_id, short, retention=2)
    await _number(db, tenant_id, stale)
    # The previous owner's bots row (keep for ever) is not this tenant's setting: 24 hours.
    await db.execute(
        "INSERT INTO bots (phone_number_id, tenant_id, instructions, retention_hours)"
        " VALUES ($1, $2, 'x', 0)",
        stale,
        previous_owner,
    )

    purged = [
        await _message(db, tenant_id, default, 25 * HOUR, media=True),
        await _message(db, tenant_id, default, 30 * HOUR),
        await _message(db, tenant_id, default, 26 * HOUR, direction="out", status="read"),
        await _message(db, tenant_id, default, 40 * HOUR, direction="out", status="failed"),
        await _message(db, tenant_id, short, 3 * HOUR, media=True),
        await _message(db, tenant_id, stale, 25 * HOUR),
    ]
    untouched = [
        await _message(db, tenant_id, default, 23 * HOUR, media=True),
        await _message(db, tenant_id, default, timedelta(seconds=1)),
        # Still the sender's: it needs the request.
        await _message(db, tenant_id, default, 30 * HOUR, direction="out", status="queued"),
        await _message(db, tenant_id, default, 30 * HOUR, direction="out", status="sending"),
        await _message(db, tenant_id, kept, 100 * 24 * HOUR, media=True),
        await _message(db, tenant_id, short, 1 * HOUR),
        await _message(db, tenant_id, stale, 23 * HOUR),
    ]
    before = {
        r["id"]: r for r in await db.fetch(f"SELECT {PURGED_COLUMNS} FROM messages ORDER BY id")
    }

    async with pool_of(settings.database_url) as pool:
        report = await run_retention(pool, settings, batch_size=2)
        assert report.messages == len(purged) and not report.busy
        assert report.media == 0  # the purged messages' media went with them, not by age
        again = await run_retention(pool, settings, batch_size=2)
        assert again.messages == 0

    after = {
        r["id"]: r for r in await db.fetch(f"SELECT {PURGED_COLUMNS} FROM messages ORDER BY id")
    }
    assert set(after) == set(before)  # no message row is deleted
    for message_id in purged:
        row, was = after[message_id], before[message_id]
        kept_columns = ("wamid", "direction", "type", "status", "created_at", "author")
        assert [row[c] for c in kept_columns] == [was[c] for c in kept_columns]
        assert (row["text"], row["media_text"], row["payload"]) == (None, None, {})
        assert (row["request"], row["fallback_template"], row["purged"]) == (None, None, True)
    for message_id in untouched:
        assert after[message_id] == before[message_id]
    media = await db.fetch("SELECT message_id, content FROM media ORDER BY media_id")
    assert {r["message_id"] for r in media} == {untouched[0], untouched[4]}
    assert all(bytes(r["content"]) == b"jpeg bytes" for r in media)


async def test_a_purged_conversation_shows_its_messages_without_their_text(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await meta.customer_writes("my card number is 4111")
    sent = await _send(meta)
    await meta.wait_status(sent.json()["id"], "read")

    def listed(response: httpx.Response) -> list[tuple[Any, ...]]:
        assert response.status_code == 200, response.text
        return [(m["id"], m["direction"], m["text"], m["purged"]) for m in response.json()["data"]]

    path = f"/v1/contacts/{CUSTOMER}/messages"
    params = {"phone_number_id": NUMBER_A}
    fresh = listed(await meta.app.client.get(path, params=params, headers=meta.tenant()))
    assert [(d, t, p) for _, d, t, p in fresh] == [
        ("out", "a person here", False),
        ("in", "my card number is 4111", False),
    ]
    async with pool_of(meta.app.settings.database_url) as pool:
        assert (await run_retention(pool, meta.app.settings)).messages == 0
        await db.execute("UPDATE messages SET created_at = created_at - interval '25 hours'")
        assert (await run_retention(pool, meta.app.settings)).messages == 2

    response = await meta.app.client.get(path, params=params, headers=meta.tenant())
    assert sorted(listed(response)) == sorted((i, d, None, True) for i, d, _, _ in fresh)
    assert "4111" not in response.text
    message = await meta.message(sent.json()["id"])
    assert message["text"] is None and message["status"] == "read"
