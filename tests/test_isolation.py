"""Tenant isolation: a tenant's key never reads or changes another tenant's rows (404, not 403).

Two tenants each own one corpus number; one webhook batch carries messages for both.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Running, corpus, wait_idle
from wa_cloud.app import ROUTES

# Contacts of the batch by number (5511987654321 writes to both numbers).
CONTACTS_A = {"16505551234", "447700900123", "5511987654321", "4915112345678"}
CONTACTS_B = {"5511987654321", "919820012345"}
SHARED = "5511987654321"
OTHER_WABA = "102290129349999"


@dataclass
class Side:
    name: str
    waba: str
    tenant_id: str
    key: str
    number: str
    app_id: str
    app_secret: str
    only_contact: str  # a wa_id that wrote to this side's number only
    secrets_in_text: tuple[str, ...]  # strings only this side's data contains

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}


@dataclass
class World:
    app: Running
    a: Side
    b: Side


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def _side(
    app: Running,
    name: str,
    number: str,
    waba: str,
    app_id: str,
    only: str,
    texts: tuple[str, ...],
) -> Side:
    tenant = await app.create_tenant(name)
    response = await app.add_number(tenant["api_key"], number, waba)
    assert response.status_code == 201, response.text
    secret = f"app-secret-of-{name}"
    await app.seed_app(app_id, secret)
    response = await app.client.post(
        "/v1/apps",
        json={"app_id": app_id, "app_secret": secret, "verify_token": f"vt-{name}"},
        headers={"authorization": f"Bearer {tenant['api_key']}"},
    )
    assert response.status_code == 201, response.text
    return Side(name, waba, tenant["id"], tenant["api_key"], number, app_id, secret, only, texts)


@pytest.fixture
async def world(app: Running, db: asyncpg.Connection) -> World:
    a = await _side(
        app,
        "Alpha",
        NUMBER_A,
        WABA,
        "3000000000000001",
        "16505551234",
        ("Sheena Nelson", "Marta Müller", "Is there a student discount?", "16505551234"),
    )
    b = await _side(
        app,
        "Beta",
        NUMBER_B,
        # The batch's entries all name one WABA; routing is by phone_number_id, and giving B a
        # WABA of its own keeps this test apart from how a shared WABA claim is resolved.
        OTHER_WABA,
        "3000000000000002",
        "919820012345",
        ("Priya Raman", "Haben Sie das auch in Schwarz?", "Danke schön!", "919820012345"),
    )
    response = await app.post_webhook(corpus("batch/three_entries_two_changes.json"))
    assert response.status_code == 200
    await wait_idle(db)
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'processed'") == 1
    return World(app, a, b)


async def _contacts(world: World, caller: Side, number: str) -> httpx.Response:
    return await world.app.client.get(
        "/v1/contacts", params={"phone_number_id": number}, headers=caller.headers()
    )


async def _messages(world: World, caller: Side, contact: str, number: str) -> httpx.Response:
    return await world.app.client.get(
        f"/v1/contacts/{contact}/messages",
        params={"phone_number_id": number},
        headers=caller.headers(),
    )


async def test_batch_lands_with_each_numbers_owner(world: World, db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        "SELECT phone_number_id, tenant_id::text AS t, count(*) AS n FROM messages"
        " GROUP BY 1, 2 ORDER BY 1"
    )
    assert [(r["phone_number_id"], r["t"], r["n"]) for r in rows] == [
        (NUMBER_A, world.a.tenant_id, 8),
        (NUMBER_B, world.b.tenant_id, 7),
    ]
    contacts = await db.fetch("SELECT phone_number_id, tenant_id::text AS t, wa_id FROM contacts")
    for side, expected in ((world.a, CONTACTS_A), (world.b, CONTACTS_B)):
        mine = [c for c in contacts if c["phone_number_id"] == side.number]
        assert {c["wa_id"] for c in mine} == expected
        assert {c["t"] for c in mine} == {side.tenant_id}
    assert await db.fetchval("SELECT count(*) FROM events WHERE orphaned") == 0


async def test_each_key_sees_only_its_own_contacts(world: World) -> None:
    for side, expected in ((world.a, CONTACTS_A), (world.b, CONTACTS_B)):
        response = await _contacts(world, side, side.number)
        assert response.status_code == 200, response.text
        assert response.json()["next"] is None
        assert {c["wa_id"] for c in response.json()["data"]} == expected


@pytest.mark.parametrize("direction", ["a_reads_b", "b_reads_a"])
async def test_other_tenants_number_is_404_for_contacts(world: World, direction: str) -> None:
    # An empty list would still tell the caller the number is served here.
    caller, victim = (world.a, world.b) if direction == "a_reads_b" else (world.b, world.a)
    response = await _contacts(world, caller, victim.number)
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("direction", ["a_reads_b", "b_reads_a"])
async def test_other_tenants_contact_messages_are_404(world: World, direction: str) -> None:
    caller, victim = (world.a, world.b) if direction == "a_reads_b" else (world.b, world.a)
    for contact, number in (
        (victim.only_contact, victim.number),  # the victim's contact on the victim's number
        (victim.only_contact, caller.number),  # ... asked for on the caller's own number
        (SHARED, victim.number),  # a wa_id both know, but on the victim's number
    ):
        response = await _messages(world, caller, contact, number)
        assert_error(response, 404, "not_found")
        for text in victim.secrets_in_text:
            assert text not in response.text


async def test_shared_wa_id_is_two_separate_contacts(world: World) -> None:
    a = await _messages(world, world.a, SHARED, NUMBER_A)
    assert a.status_code == 200, a.text
    assert [m["text"] for m in a.json()["data"]] == ["Is there a student discount?"]
    b = await _messages(world, world.b, SHARED, NUMBER_B)
    assert b.status_code == 200, b.text
    assert [m["text"] for m in b.json()["data"]] == [
        "Please cancel the second item.",
        "好的\uff0c明天见。",
        "I'll call you back in 5 minutes.",
        "Haben Sie das auch in Schwarz?",
    ]
    assert {m["direction"] for m in b.json()["data"]} == {"in"}


# --- every tenant route, called with the other tenant's ids ---------------------------------

Probe = Callable[[World, Side, Side, asyncpg.Connection], Awaitable[list[httpx.Response]]]


async def _probe_create_number(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    taken = await world.app.add_number(
        caller.key, victim.number, caller.waba, access_token="EAAG-hijack"
    )
    # Meta is asked first: whether the number is registered here is not told to a stranger.
    assert taken.status_code == 422, taken.text
    assert taken.json()["error"]["code"] == "meta_token_invalid"
    with_their_app = await world.app.add_number(
        caller.key, "106540352249999", caller.waba, app_id=victim.app_id
    )
    assert_error(with_their_app, 422, "unknown_app")
    after = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    assert dict(after) == dict(before)
    assert await db.fetchval("SELECT count(*) FROM numbers") == 2
    return [taken, with_their_app]


async def _probe_list_numbers(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    response = await world.app.client.get("/v1/numbers", headers=caller.headers())
    assert response.status_code == 200, response.text
    assert [n["phone_number_id"] for n in response.json()["data"]] == [caller.number]
    return [response]


async def _probe_get_number(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    own = await world.app.client.get(f"/v1/numbers/{caller.number}", headers=caller.headers())
    assert own.status_code == 200, own.text
    response = await world.app.client.get(f"/v1/numbers/{victim.number}", headers=caller.headers())
    assert_error(response, 404, "not_found")
    return [response]


async def _probe_get_bot(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    own = await world.app.client.get(f"/v1/numbers/{caller.number}/bot", headers=caller.headers())
    assert own.status_code == 200, own.text
    response = await world.app.client.get(
        f"/v1/numbers/{victim.number}/bot", headers=caller.headers()
    )
    assert_error(response, 404, "not_found")
    return [response]


async def _probe_tool_calls(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    await db.execute(
        "INSERT INTO tool_calls (tenant_id, phone_number_id, tool, arguments, status,"
        " duration_ms) VALUES ($1, $2, 'order_status', $3, 200, 5)",
        victim.tenant_id,
        victim.number,
        json.dumps({"order": victim.secrets_in_text[0]}),
    )
    own = await world.app.client.get(
        f"/v1/numbers/{caller.number}/tool-calls", headers=caller.headers()
    )
    assert own.status_code == 200, own.text
    response = await world.app.client.get(
        f"/v1/numbers/{victim.number}/tool-calls", headers=caller.headers()
    )
    assert_error(response, 404, "not_found")
    return [own, response]


async def _probe_number_qr(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    own = await world.app.client.get(f"/v1/numbers/{caller.number}/qr", headers=caller.headers())
    assert_error(own, 422, "not_a_web_session")  # a Cloud API number of the caller's
    response = await world.app.client.get(
        f"/v1/numbers/{victim.number}/qr", headers=caller.headers()
    )
    assert_error(response, 404, "not_found")
    return [response]


async def _probe_put_bot(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await db.fetch("SELECT * FROM bots ORDER BY phone_number_id")
    number = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    response = await world.app.client.put(
        f"/v1/numbers/{victim.number}/bot",
        json={"instructions": "Say the other tenant's secrets.", "api_key": "sk-mine"},
        headers=caller.headers(),
    )
    assert_error(response, 404, "not_found")
    assert [dict(r) for r in await db.fetch("SELECT * FROM bots ORDER BY phone_number_id")] == [
        dict(r) for r in before
    ]
    after = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    assert dict(after) == dict(number)
    return [response]


async def _probe_delete_number(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    response = await world.app.client.delete(
        f"/v1/numbers/{victim.number}", headers=caller.headers()
    )
    assert_error(response, 404, "not_found")
    after = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    assert dict(after) == dict(before)
    return [response]


async def _probe_embedded_signup(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    response = await world.app.client.post(
        "/v1/onboarding/embedded-signup",
        json={"code": "any-code", "waba_id": victim.waba, "phone_number_id": victim.number},
        headers=caller.headers(),
    )
    # Refused before Meta is asked (the number is taken) or by Meta (no such code): never 2xx.
    assert response.status_code in (409, 422), response.text
    after = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    assert dict(after) == dict(before)
    return [response]


async def _probe_upload_media(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    response = await world.app.client.post(
        "/v1/media",
        files={"file": ("a.jpg", b"\xff\xd8\xff\xe0" + bytes(64), "image/jpeg")},
        data={"from": victim.number, "type": "image"},
        headers=caller.headers(),
    )
    assert_error(response, 404, "not_found")
    return [response]


async def _probe_get_media(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    media_id = f"media-of-{victim.name}"
    await db.execute(
        "INSERT INTO media (tenant_id, phone_number_id, media_id, mime_type, content, size, state)"
        " VALUES ($1::uuid, $2, $3, 'image/jpeg', $4, 4, 'stored') ON CONFLICT DO NOTHING",
        victim.tenant_id,
        victim.number,
        media_id,
        b"\xff\xd8\xff\x00",
    )
    own = await world.app.client.get(f"/v1/media/{media_id}", headers=victim.headers())
    assert own.status_code == 200
    response = await world.app.client.get(f"/v1/media/{media_id}", headers=caller.headers())
    assert_error(response, 404, "not_found")
    return [response]


async def _probe_update_number(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    response = await world.app.client.patch(
        f"/v1/numbers/{victim.number}",
        json={"bot_enabled": False, "throughput_mps": 1},
        headers=caller.headers(),
    )
    assert_error(response, 404, "not_found")
    after = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", victim.number)
    assert dict(after) == dict(before)
    return [response]


async def _probe_list_events(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    response = await world.app.client.get("/v1/events", headers=caller.headers())
    assert response.status_code == 200, response.text
    assert response.json()["data"], "the caller's own changes are in its log"
    assert {e["tenant_id"] for e in response.json()["data"]} == {caller.tenant_id}
    return [response]


async def _probe_create_app(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await db.fetchrow("SELECT * FROM apps WHERE app_id = $1", victim.app_id)
    response = await world.app.client.post(
        "/v1/apps",
        json={"app_id": victim.app_id, "app_secret": "hijack", "verify_token": "hijack"},
        headers=caller.headers(),
    )
    # Meta does not confirm the app id with another secret: not stored, nothing told.
    assert_error(response, 422, "app_not_verified")
    after = await db.fetchrow("SELECT * FROM apps WHERE app_id = $1", victim.app_id)
    assert dict(after) == dict(before)
    return [response]


async def _probe_list_apps(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    response = await world.app.client.get("/v1/apps", headers=caller.headers())
    assert response.status_code == 200, response.text
    assert [a["app_id"] for a in response.json()["data"]] == [caller.app_id]
    return [response]


async def _probe_update_app(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await db.fetchrow("SELECT * FROM apps WHERE app_id = $1", victim.app_id)
    response = await world.app.client.put(
        f"/v1/apps/{victim.app_id}",
        json={"app_secret": victim.app_secret, "verify_token": "hijack"},
        headers=caller.headers(),
    )
    assert_error(response, 404, "not_found")
    after = await db.fetchrow("SELECT * FROM apps WHERE app_id = $1", victim.app_id)
    assert dict(after) == dict(before)
    return [response]


async def _probe_delete_app(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    response = await world.app.client.delete(f"/v1/apps/{victim.app_id}", headers=caller.headers())
    assert_error(response, 404, "not_found")
    assert await db.fetchval("SELECT count(*) FROM apps WHERE app_id = $1", victim.app_id) == 1
    return [response]


async def _probe_list_contacts(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    response = await _contacts(world, caller, victim.number)
    assert_error(response, 404, "not_found")
    return [response]


async def _probe_contact_messages(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    response = await _messages(world, caller, victim.only_contact, victim.number)
    assert_error(response, 404, "not_found")
    return [response]


async def _probe_send_message(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    outbound = "SELECT count(*) FROM messages WHERE direction = 'out'"
    before = await db.fetchval(outbound)
    response = await world.app.client.post(
        "/v1/messages",
        json={
            "from": victim.number,
            "to": victim.only_contact,  # the window with the victim's number is open
            "type": "text",
            "text": {"body": "sent from someone else's number"},
        },
        headers=caller.headers(),
    )
    assert_error(response, 404, "not_found")
    assert await db.fetchval(outbound) == before
    return [response]


async def _probe_get_message(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    message_id = await db.fetchval(
        "SELECT id::text FROM messages WHERE tenant_id = $1::uuid LIMIT 1", victim.tenant_id
    )
    assert message_id is not None
    own = await world.app.client.get(f"/v1/messages/{message_id}", headers=victim.headers())
    assert own.status_code == 200, own.text  # the id is real: the probe below means something
    response = await world.app.client.get(f"/v1/messages/{message_id}", headers=caller.headers())
    assert_error(response, 404, "not_found")
    return [response]


# --- /v1/webhooks: the victim has a webhook (and a delivery), the caller none -------------


def _hook_url(side: Side) -> str:
    return f"http://127.0.0.1:9/hook-of-{side.name}"  # nothing listens: never reached


async def _victim_webhook(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> asyncpg.Record:
    """The victim's webhook as it stands, the caller's removed."""
    await world.app.client.delete("/v1/webhooks", headers=caller.headers())
    response = await world.app.client.put(
        "/v1/webhooks",
        json={"url": _hook_url(victim), "events": ["bot.reply"]},
        headers=victim.headers(),
    )
    assert response.status_code == 200, response.text
    row = await db.fetchrow(
        "SELECT * FROM tenant_webhooks WHERE tenant_id = $1::uuid", victim.tenant_id
    )
    assert row is not None
    return row


async def _victim_webhook_unchanged(
    db: asyncpg.Connection, victim: Side, before: asyncpg.Record
) -> None:
    after = await db.fetchrow(
        "SELECT * FROM tenant_webhooks WHERE tenant_id = $1::uuid", victim.tenant_id
    )
    assert after is not None and dict(after) == dict(before)


async def _probe_put_webhook(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await _victim_webhook(world, caller, victim, db)
    own = await world.app.client.put(
        "/v1/webhooks",
        json={"url": _hook_url(caller), "events": ["bot.reply"]},
        headers=caller.headers(),
    )
    assert own.status_code == 200, own.text
    assert own.json()["url"] == _hook_url(caller)
    assert _hook_url(victim) not in own.text and not _leaks(own, victim)
    await _victim_webhook_unchanged(db, victim, before)
    deleted = await world.app.client.delete("/v1/webhooks", headers=caller.headers())
    assert deleted.status_code == 204, deleted.text
    await _victim_webhook_unchanged(db, victim, before)
    gone = await world.app.client.get("/v1/webhooks", headers=caller.headers())
    assert_error(gone, 404, "not_found")
    return [gone]


async def _probe_get_webhook(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    await _victim_webhook(world, caller, victim, db)
    theirs = await world.app.client.get("/v1/webhooks", headers=victim.headers())
    assert theirs.status_code == 200 and theirs.json()["url"] == _hook_url(victim)
    response = await world.app.client.get("/v1/webhooks", headers=caller.headers())
    assert_error(response, 404, "not_found")
    assert _hook_url(victim) not in response.text
    return [response]


async def _probe_delete_webhook(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await _victim_webhook(world, caller, victim, db)
    response = await world.app.client.delete("/v1/webhooks", headers=caller.headers())
    assert_error(response, 404, "not_found")
    await _victim_webhook_unchanged(db, victim, before)
    return [response]


async def _probe_list_deliveries(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    await _victim_webhook(world, caller, victim, db)
    delivered = await db.fetchval(
        "INSERT INTO forwards (tenant_id, event, payload, dedup_key, state, attempts,"
        " last_status, delivered_at)"
        " VALUES ($1::uuid, 'bot.reply', $2, gen_random_uuid()::text::bytea, 'delivered', 1,"
        " 200, now()) RETURNING id::text",
        victim.tenant_id,
        {"text": victim.secrets_in_text[0]},
    )
    theirs = await world.app.client.get("/v1/webhooks/deliveries", headers=victim.headers())
    assert delivered in {d["id"] for d in theirs.json()["data"]}
    response = await world.app.client.get("/v1/webhooks/deliveries", headers=caller.headers())
    assert response.status_code == 200, response.text
    assert delivered not in response.text
    return [response]


async def _pauses(db: asyncpg.Connection, victim: Side) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT id, bot_paused, paused_until, paused_by FROM contacts"
        " WHERE tenant_id = $1::uuid ORDER BY id",
        victim.tenant_id,
    )
    return [tuple(r) for r in rows]


async def _probe_pause(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection, action: str
) -> list[httpx.Response]:
    before = await _pauses(db, victim)
    responses = []
    for contact, number in (
        (victim.only_contact, victim.number),  # the victim's contact on the victim's number
        (victim.only_contact, caller.number),  # ... named on the caller's own number
        (SHARED, victim.number),  # a wa_id both know, but on the victim's number
    ):
        response = await world.app.client.post(
            f"/v1/contacts/{contact}/{action}",
            json={"phone_number_id": number},
            headers=caller.headers(),
        )
        assert_error(response, 404, "not_found")
        responses.append(response)
    assert await _pauses(db, victim) == before
    return responses


async def _probe_pause_contact(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    return await _probe_pause(world, caller, victim, db, "pause")


async def _probe_resume_contact(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    await db.execute(
        "UPDATE contacts SET bot_paused = true, paused_by = 'api' WHERE tenant_id = $1::uuid",
        victim.tenant_id,
    )
    return await _probe_pause(world, caller, victim, db, "resume")


async def _memory(db: asyncpg.Connection, victim: Side) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT id, tags, notes, fields::text FROM contacts WHERE tenant_id = $1::uuid ORDER BY id",
        victim.tenant_id,
    )
    return [tuple(r) for r in rows]


async def _probe_contact_memory(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection, method: str
) -> list[httpx.Response]:
    await db.execute(
        "UPDATE contacts SET tags = '{vip}', notes = $2, fields = $3 WHERE tenant_id = $1::uuid",
        victim.tenant_id,
        victim.secrets_in_text[0],
        {"city": {"value": victim.secrets_in_text[1], "by": "api"}},
    )
    before = await _memory(db, victim)
    body = {"tags": [], "notes": None, "fields": {"city": None}} if method == "PATCH" else None
    responses = []
    for contact, number in (
        (victim.only_contact, victim.number),
        (victim.only_contact, caller.number),
        (SHARED, victim.number),
    ):
        response = await world.app.client.request(
            method,
            f"/v1/contacts/{contact}",
            params={"phone_number_id": number},
            json=body,
            headers=caller.headers(),
        )
        assert_error(response, 404, "not_found")
        responses.append(response)
    assert await _memory(db, victim) == before
    return responses


async def _probe_get_contact(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    return await _probe_contact_memory(world, caller, victim, db, "GET")


async def _probe_update_contact(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    return await _probe_contact_memory(world, caller, victim, db, "PATCH")


async def _victim_follow_up(db: asyncpg.Connection, victim: Side) -> int:
    """A reminder of the victim's, waiting, quoting the victim's text."""
    follow_up_id: int = await db.fetchval(
        "INSERT INTO follow_ups (tenant_id, phone_number_id, contact_id, kind, due_at, text)"
        " SELECT tenant_id, phone_number_id, id, 'reminder', now() + interval '300 days', $3"
        "   FROM contacts WHERE tenant_id = $1::uuid AND phone_number_id = $2 AND wa_id = $4"
        " RETURNING id",
        victim.tenant_id,
        victim.number,
        victim.secrets_in_text[0],
        victim.only_contact,
    )
    return follow_up_id


async def _follow_ups(db: asyncpg.Connection, victim: Side) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT id, state, due_at, text FROM follow_ups WHERE tenant_id = $1::uuid ORDER BY id",
        victim.tenant_id,
    )
    return [tuple(r) for r in rows]


async def _probe_follow_ups(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection, method: str
) -> list[httpx.Response]:
    follow_up_id = await _victim_follow_up(db, victim)
    before = await _follow_ups(db, victim)
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    responses = []
    for contact, number in (
        (victim.only_contact, victim.number),  # the victim's contact on the victim's number
        (victim.only_contact, caller.number),  # ... named on the caller's own number
        (SHARED, victim.number),  # a wa_id both know, but on the victim's number
    ):
        if method == "POST":
            response = await world.app.client.post(
                f"/v1/contacts/{contact}/reminders",
                json={"phone_number_id": number, "at": at, "text": "hi"},
                headers=caller.headers(),
            )
        else:
            path = f"/v1/contacts/{contact}/follow-ups"
            response = await world.app.client.request(
                method,
                path if method == "GET" else f"{path}/{follow_up_id}",
                params={"phone_number_id": number},
                headers=caller.headers(),
            )
        assert_error(response, 404, "not_found")
        responses.append(response)
    assert await _follow_ups(db, victim) == before
    return responses


async def _probe_list_follow_ups(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    return await _probe_follow_ups(world, caller, victim, db, "GET")


async def _probe_cancel_follow_up(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    return await _probe_follow_ups(world, caller, victim, db, "DELETE")


async def _probe_create_reminder(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    return await _probe_follow_ups(world, caller, victim, db, "POST")


async def _probe_usage(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    """There is no id to name: the caller's usage must hold nothing of the victim's."""
    marker = victim.secrets_in_text[0]
    await db.execute(
        "INSERT INTO credit_ledger (tenant_id, amount, balance_before, balance_after, reason)"
        " VALUES ($1::uuid, 4321, 0, 4321, $2)",
        victim.tenant_id,
        marker,
    )
    await db.execute(
        "INSERT INTO token_usage (tenant_id, phone_number_id, model, feature, day, calls,"
        " input_tokens, output_tokens) VALUES ($1::uuid, $2, $3, 'reply', current_date, 1, 1, 1)"
        " ON CONFLICT DO NOTHING",
        victim.tenant_id,
        victim.number,
        marker,
    )
    theirs = await world.app.client.get("/v1/usage", headers=victim.headers())
    assert marker in theirs.text  # the rows are real: the probe below means something
    response = await world.app.client.get("/v1/usage", headers=caller.headers())
    assert response.status_code == 200, response.text
    assert marker not in response.text and victim.number not in response.text
    return [response]


# --- campaigns: the victim's broadcast, opt-out and template -------------------------------

# A campaign scheduled then never sends during the test (and is within the year allowed).
FUTURE = (datetime.now(UTC) + timedelta(days=300)).isoformat()


def _template_name(side: Side) -> str:
    return f"order_ready_{side.name.lower()}"


async def _victim_template(world: World, victim: Side) -> str:
    """An approved template on the victim's WABA (at the sandbox Meta)."""
    # _probe_create_number seeds the victim's number at Meta under the caller's WABA (the
    # hijack Meta is asked about): put it back where it belongs first.
    await world.app.seed_number(victim.number, victim.waba)
    seeded = await world.app.sandbox.post(
        "/_sandbox/templates",
        json={
            "waba_id": victim.waba,
            "name": _template_name(victim),
            "language": "en_US",
            "body": "Your order {{1}} is ready.",
            "category": "UTILITY",
        },
    )
    assert seeded.status_code == 201, seeded.text
    return _template_name(victim)


async def _victim_templates(world: World, victim: Side) -> list[dict[str, Any]]:
    response = await world.app.client.get(
        "/v1/templates", params={"phone_number_id": victim.number}, headers=victim.headers()
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def _victim_broadcast(world: World, victim: Side, db: asyncpg.Connection) -> str:
    """The victim's campaign (scheduled far ahead: it sends nothing), created by the victim
    through the API the first time it is asked for."""
    existing = await db.fetchval(
        "SELECT id::text FROM broadcasts WHERE tenant_id = $1::uuid", victim.tenant_id
    )
    if existing is not None:
        return str(existing)
    template = await _victim_template(world, victim)
    response = await world.app.client.post(
        "/v1/broadcasts",
        json={
            "from": victim.number,
            "name": victim.secrets_in_text[0],
            "template": {"name": template, "language": {"code": "en_US"}},
            "recipients": [{"to": "+" + victim.only_contact, "variables": ["A-1"]}],
            "at": FUTURE,
        },
        headers=victim.headers(),
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "scheduled"
    return str(response.json()["id"])


async def _broadcast_row(db: asyncpg.Connection, broadcast_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM broadcasts WHERE id = $1::uuid", broadcast_id)
    assert row is not None
    return dict(row)


async def _probe_create_broadcast(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    template = await _victim_template(world, victim)
    count = "SELECT count(*) FROM broadcasts WHERE phone_number_id = $1"
    before = await db.fetchval(count, victim.number)
    request = {
        "from": victim.number,
        "name": "sent from someone else's number",
        "template": {"name": template, "language": {"code": "en_US"}},
        "recipients": [{"to": "+" + victim.only_contact, "variables": ["X"]}],
        "at": FUTURE,
    }
    responses = []
    for body in (request, {**request, "dry_run": True}):  # a dry run tells nothing either
        response = await world.app.client.post(
            "/v1/broadcasts", json=body, headers=caller.headers()
        )
        assert_error(response, 404, "not_found")
        responses.append(response)
    form = await world.app.client.post(
        "/v1/broadcasts",
        data={
            "from": victim.number,
            "name": "CSV",
            "template": json.dumps(request["template"]),
            "at": FUTURE,
        },
        files={"recipients": ("list.csv", f"+{victim.only_contact},X\n".encode(), "text/csv")},
        headers=caller.headers(),
    )
    assert_error(form, 404, "not_found")
    assert await db.fetchval(count, victim.number) == before
    return [*responses, form]


async def _probe_list_broadcasts(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    broadcast_id = await _victim_broadcast(world, victim, db)
    theirs = await world.app.client.get("/v1/broadcasts", headers=victim.headers())
    assert broadcast_id in {b["id"] for b in theirs.json()["data"]}
    response = await world.app.client.get("/v1/broadcasts", headers=caller.headers())
    assert response.status_code == 200, response.text
    assert broadcast_id not in response.text
    return [response]


async def _probe_get_broadcast(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    broadcast_id = await _victim_broadcast(world, victim, db)
    own = await world.app.client.get(f"/v1/broadcasts/{broadcast_id}", headers=victim.headers())
    assert own.status_code == 200, own.text  # the id is real: the probe below means something
    response = await world.app.client.get(
        f"/v1/broadcasts/{broadcast_id}", headers=caller.headers()
    )
    assert_error(response, 404, "not_found")
    return [response]


async def _probe_broadcast_recipients(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    broadcast_id = await _victim_broadcast(world, victim, db)
    path = f"/v1/broadcasts/{broadcast_id}/recipients.csv"
    own = await world.app.client.get(path, headers=victim.headers())
    assert own.status_code == 200 and victim.only_contact in own.text, own.text
    response = await world.app.client.get(path, headers=caller.headers())
    assert_error(response, 404, "not_found")
    return [response]


async def _probe_change_broadcast(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    broadcast_id = await _victim_broadcast(world, victim, db)
    if (await _broadcast_row(db, broadcast_id))["status"] != "paused":
        # The owner can pause it, and a paused campaign is one every action applies to.
        own = await world.app.client.post(
            f"/v1/broadcasts/{broadcast_id}/pause", headers=victim.headers()
        )
        assert own.status_code == 200 and own.json()["status"] == "paused", own.text
    before = await _broadcast_row(db, broadcast_id)
    responses = []
    for action in ("pause", "resume", "cancel"):
        response = await world.app.client.post(
            f"/v1/broadcasts/{broadcast_id}/{action}", headers=caller.headers()
        )
        assert_error(response, 404, "not_found")
        responses.append(response)
    assert await _broadcast_row(db, broadcast_id) == before
    return responses


async def _victim_opt_outs(world: World, victim: Side, db: asyncpg.Connection) -> list[Any]:
    """The victim's opt-outs, the victim's contact among them."""
    added = await world.app.client.post(
        "/v1/opt-outs",
        json={"phone_number_id": victim.number, "to": "+" + victim.only_contact},
        headers=victim.headers(),
    )
    assert added.status_code in (200, 201), added.text
    rows = await db.fetch(
        "SELECT * FROM opt_outs WHERE tenant_id = $1::uuid ORDER BY recipient", victim.tenant_id
    )
    assert victim.only_contact in {r["recipient"] for r in rows}
    return [dict(r) for r in rows]


async def _victim_opt_outs_unchanged(
    db: asyncpg.Connection, victim: Side, before: list[Any]
) -> None:
    after = await db.fetch(
        "SELECT * FROM opt_outs WHERE phone_number_id = $1 ORDER BY recipient", victim.number
    )
    assert [dict(r) for r in after] == before


async def _probe_list_opt_outs(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    await _victim_opt_outs(world, victim, db)
    responses = []
    for number in (victim.number, caller.number):
        response = await world.app.client.get(
            "/v1/opt-outs", params={"phone_number_id": number}, headers=caller.headers()
        )
        if number == victim.number:
            assert_error(response, 404, "not_found")
        else:
            assert response.status_code == 200, response.text
            assert victim.only_contact not in response.text
        responses.append(response)
    return responses


async def _probe_add_opt_out(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await _victim_opt_outs(world, victim, db)
    responses = []
    for to in (victim.only_contact, SHARED):
        response = await world.app.client.post(
            "/v1/opt-outs",
            json={"phone_number_id": victim.number, "to": to},
            headers=caller.headers(),
        )
        assert_error(response, 404, "not_found")
        responses.append(response)
    await _victim_opt_outs_unchanged(db, victim, before)
    return responses


async def _probe_remove_opt_out(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    before = await _victim_opt_outs(world, victim, db)
    responses = []
    for number in (victim.number, caller.number):  # the victim's number, then the caller's own
        response = await world.app.client.delete(
            f"/v1/opt-outs/{victim.only_contact}",
            params={"phone_number_id": number},
            headers=caller.headers(),
        )
        assert_error(response, 404, "not_found")
        responses.append(response)
    await _victim_opt_outs_unchanged(db, victim, before)
    return responses


async def _probe_list_templates(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    template = await _victim_template(world, victim)
    assert template in {t["name"] for t in await _victim_templates(world, victim)}
    theirs = await world.app.client.get(
        "/v1/templates", params={"phone_number_id": victim.number}, headers=caller.headers()
    )
    assert_error(theirs, 404, "not_found")
    own = await world.app.client.get(
        "/v1/templates", params={"phone_number_id": caller.number}, headers=caller.headers()
    )
    assert own.status_code == 200, own.text
    assert template not in own.text
    return [theirs, own]


def _template_file(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "language": "en_US",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Your parcel is on its way."}],
    }


async def _probe_put_template(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    template = await _victim_template(world, victim)
    before = await _victim_templates(world, victim)
    responses = []
    for name in (template, "brand_new_one"):  # an edit of theirs, a new one on their WABA
        response = await world.app.client.put(
            f"/v1/templates/{name}",
            params={"phone_number_id": victim.number},
            json=_template_file(name),
            headers=caller.headers(),
        )
        assert_error(response, 404, "not_found")
        responses.append(response)
    assert await _victim_templates(world, victim) == before
    return responses


async def _probe_delete_template(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    template = await _victim_template(world, victim)
    responses = []
    for number in (victim.number, caller.number):  # their number, then the caller's own WABA
        response = await world.app.client.delete(
            f"/v1/templates/{template}",
            params={"phone_number_id": number},
            headers=caller.headers(),
        )
        assert_error(response, 404, "not_found")
        responses.append(response)
    assert template in {t["name"] for t in await _victim_templates(world, victim)}
    return responses


async def _victim_file(world: World, victim: Side) -> str:
    """The id of a file in the victim's library (its title is one of the victim's secrets)."""
    path = f"/v1/numbers/{victim.number}/files"
    listed = await world.app.client.get(path, headers=victim.headers())
    assert listed.status_code == 200, listed.text
    if listed.json()["data"]:
        return str(listed.json()["data"][0]["id"])
    added = await world.app.client.post(
        path,
        files={"file": ("menu.pdf", b"%PDF-1.4\n" + bytes(64), "application/pdf")},
        data={"title": victim.secrets_in_text[2]},
        headers=victim.headers(),
    )
    assert added.status_code == 201, added.text
    return str(added.json()["id"])


async def _probe_list_files(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    await _victim_file(world, victim)
    own = await world.app.client.get(f"/v1/numbers/{caller.number}/files", headers=caller.headers())
    assert own.status_code == 200, own.text
    response = await world.app.client.get(
        f"/v1/numbers/{victim.number}/files", headers=caller.headers()
    )
    assert_error(response, 404, "not_found")
    return [own, response]


async def _probe_add_file(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    count = "SELECT count(*) FROM bot_files WHERE tenant_id = $1::uuid"
    before = await db.fetchval(count, victim.tenant_id)
    response = await world.app.client.post(
        f"/v1/numbers/{victim.number}/files",
        files={"file": ("planted.pdf", b"%PDF-1.4\n" + bytes(64), "application/pdf")},
        data={"title": "Planted"},
        headers=caller.headers(),
    )
    assert_error(response, 404, "not_found")
    assert await db.fetchval(count, victim.tenant_id) == before
    return [response]


async def _probe_delete_file(
    world: World, caller: Side, victim: Side, db: asyncpg.Connection
) -> list[httpx.Response]:
    file_id = await _victim_file(world, victim)
    responses = []
    for number in (victim.number, caller.number):  # their number, then the caller's own
        response = await world.app.client.delete(
            f"/v1/numbers/{number}/files/{file_id}", headers=caller.headers()
        )
        assert_error(response, 404, "not_found")
        responses.append(response)
    assert await db.fetchval("SELECT count(*) FROM bot_files WHERE id = $1::uuid", file_id) == 1
    return responses


PROBES: dict[tuple[str, str], Probe] = {
    ("POST", "/v1/numbers"): _probe_create_number,
    ("GET", "/v1/numbers"): _probe_list_numbers,
    ("GET", "/v1/numbers/{phone_number_id}"): _probe_get_number,
    ("PATCH", "/v1/numbers/{phone_number_id}"): _probe_update_number,
    ("DELETE", "/v1/numbers/{phone_number_id}"): _probe_delete_number,
    ("GET", "/v1/numbers/{phone_number_id}/bot"): _probe_get_bot,
    ("PUT", "/v1/numbers/{phone_number_id}/bot"): _probe_put_bot,
    ("GET", "/v1/numbers/{phone_number_id}/tool-calls"): _probe_tool_calls,
    ("GET", "/v1/numbers/{phone_number_id}/qr"): _probe_number_qr,
    ("POST", "/v1/onboarding/embedded-signup"): _probe_embedded_signup,
    ("POST", "/v1/media"): _probe_upload_media,
    ("GET", "/v1/media/{media_id}"): _probe_get_media,
    ("POST", "/v1/apps"): _probe_create_app,
    ("GET", "/v1/apps"): _probe_list_apps,
    ("PUT", "/v1/apps/{app_id}"): _probe_update_app,
    ("DELETE", "/v1/apps/{app_id}"): _probe_delete_app,
    ("POST", "/v1/messages"): _probe_send_message,
    ("GET", "/v1/messages/{message_id}"): _probe_get_message,
    ("GET", "/v1/contacts"): _probe_list_contacts,
    ("GET", "/v1/events"): _probe_list_events,
    ("GET", "/v1/contacts/{contact}/messages"): _probe_contact_messages,
    ("POST", "/v1/contacts/{contact}/pause"): _probe_pause_contact,
    ("POST", "/v1/contacts/{contact}/resume"): _probe_resume_contact,
    ("GET", "/v1/contacts/{contact}"): _probe_get_contact,
    ("PATCH", "/v1/contacts/{contact}"): _probe_update_contact,
    ("GET", "/v1/contacts/{contact}/follow-ups"): _probe_list_follow_ups,
    ("GET", "/v1/numbers/{phone_number_id}/files"): _probe_list_files,
    ("POST", "/v1/numbers/{phone_number_id}/files"): _probe_add_file,
    ("DELETE", "/v1/numbers/{phone_number_id}/files/{file_id}"): _probe_delete_file,
    ("DELETE", "/v1/contacts/{contact}/follow-ups/{follow_up_id}"): _probe_cancel_follow_up,
    ("POST", "/v1/contacts/{contact}/reminders"): _probe_create_reminder,
    ("GET", "/v1/usage"): _probe_usage,
    ("PUT", "/v1/webhooks"): _probe_put_webhook,
    ("GET", "/v1/webhooks"): _probe_get_webhook,
    ("DELETE", "/v1/webhooks"): _probe_delete_webhook,
    ("GET", "/v1/webhooks/deliveries"): _probe_list_deliveries,
    ("POST", "/v1/broadcasts"): _probe_create_broadcast,
    ("GET", "/v1/broadcasts"): _probe_list_broadcasts,
    ("GET", "/v1/broadcasts/{broadcast_id}"): _probe_get_broadcast,
    ("GET", "/v1/broadcasts/{broadcast_id}/recipients.csv"): _probe_broadcast_recipients,
    ("POST", "/v1/broadcasts/{broadcast_id}/{action}"): _probe_change_broadcast,
    ("GET", "/v1/opt-outs"): _probe_list_opt_outs,
    ("POST", "/v1/opt-outs"): _probe_add_opt_out,
    ("DELETE", "/v1/opt-outs/{to}"): _probe_remove_opt_out,
    ("GET", "/v1/templates"): _probe_list_templates,
    ("PUT", "/v1/templates/{name}"): _probe_put_template,
    ("DELETE", "/v1/templates/{name}"): _probe_delete_template,
}


def tenant_routes() -> set[tuple[str, str]]:
    found = set()
    for route in ROUTES:
        path = route.path
        if not path.startswith("/v1/") or path.startswith("/v1/admin"):
            continue
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, path))
    return found


def _leaks(response: httpx.Response, victim: Side) -> list[str]:
    return [
        s
        for s in (victim.tenant_id, victim.app_secret, victim.key, *victim.secrets_in_text)
        if s in response.text
    ]


async def test_every_tenant_route_refuses_the_other_tenants_ids(
    world: World, db: asyncpg.Connection
) -> None:
    routes = tenant_routes()
    assert routes, "no /v1 tenant routes found in wa_cloud.app.ROUTES"
    unknown = sorted(routes - set(PROBES))
    assert not unknown, (
        f"new tenant route(s) {unknown}: add an isolation probe for them to PROBES in "
        "tests/test_isolation.py"
    )
    for caller, victim in ((world.a, world.b), (world.b, world.a)):
        for method, path in sorted(routes):
            responses = await PROBES[(method, path)](world, caller, victim, db)
            assert responses
            for response in responses:
                leaked = _leaks(response, victim)
                assert not leaked, f"{method} {path} as {caller.name} shows {leaked}"
                if response.is_success:
                    body = response.json()
                    # A list's items, or the one object a route answers with (GET /v1/usage).
                    data = body.get("data", [body])
                    assert isinstance(data, list)
                    for item in data:
                        assert victim.number not in str(item.values())
    # Nothing of the victim's was changed along the way.
    owners = await db.fetch("SELECT phone_number_id, tenant_id::text AS t FROM numbers")
    assert {(r["phone_number_id"], r["t"]) for r in owners} == {
        (NUMBER_A, world.a.tenant_id),
        (NUMBER_B, world.b.tenant_id),
    }
    assert await db.fetchval("SELECT count(*) FROM apps") == 2


def test_probe_table_has_no_stale_routes() -> None:
    stale = sorted(set(PROBES) - tenant_routes())
    assert not stale, f"PROBES names routes that no longer exist: {stale}"


async def test_claiming_another_tenants_waba_does_not_divert_its_events(
    app: Running, db: asyncpg.Connection
) -> None:
    owner = await app.create_tenant("WABA owner")
    assert (await app.add_number(owner["api_key"], NUMBER_A)).status_code == 201
    intruder = await app.create_tenant("Intruder")
    # The intruder may be refused outright (409/422) or accepted; either way it gets nothing.
    claim = await app.add_number(intruder["api_key"], "106540352249999")
    assert claim.status_code in (201, 409, 422), claim.text

    body = corpus("fields/message_template_status_update.json")
    assert (await app.post_webhook(body)).status_code == 200
    await wait_idle(db)
    rows = await db.fetch(
        "SELECT tenant_id::text AS t FROM events WHERE field = 'message_template_status_update'"
    )
    assert rows, "the template event was not stored"
    assert intruder["id"] not in {r["t"] for r in rows}
    assert {r["t"] for r in rows} <= {owner["id"], None}
