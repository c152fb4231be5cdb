"""The tenant trust boundary, end to end over HTTP: a delivery speaks only for the numbers of
its source, a tenant's app must be proven before it is stored, and a number's token goes only
to the Graph API (and to the download URL Meta itself returned).

The attack these tests replay: tenant A registers its own Meta app, then posts bodies signed
with that app's secret to `/webhook/apps/{A's app}` naming tenant B's number, including an image
whose media "id" is a URL of A's choosing. Before the fix the worker indexed them by
`phone_number_id` alone: contacts, messages, windows and statuses on B's number, B's forwarded
events, and B's token sent to A's URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Running, bound_socket, wait_idle

OTHER_WABA = "102290129340399"
APP_A = "3000000000000003"
APP_A_SECRET = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4"
CUSTOMER = "16505551234"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _messages_body(
    number: str, waba: str, *, wamid: str, media_id: str | None = None, at: int | None = None
) -> bytes:
    message: dict[str, Any] = {
        "from": CUSTOMER,
        "id": wamid,
        "timestamp": str(at or int(time.time())),
    }
    if media_id is None:
        message |= {"type": "text", "text": {"body": "hello from nowhere"}}
    else:
        message |= {"type": "image", "image": {"mime_type": "image/jpeg", "id": media_id}}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": number},
        "contacts": [{"profile": {"name": "Mallory"}, "wa_id": CUSTOMER}],
        "messages": [message],
    }
    envelope = {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(envelope).encode()


def _status_body(number: str, waba: str, *, wamid: str, status: str = "read") -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": number},
        "statuses": [
            {
                "id": wamid,
                "status": status,
                "timestamp": str(int(time.time())),
                "recipient_id": CUSTOMER,
            }
        ],
    }
    envelope = {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(envelope).encode()


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback server that records every connection made to it (none should be)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            seen.append(await asyncio.wait_for(reader.read(65536), 2))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    sock = bound_socket()
    server = await asyncio.start_server(handle, sock=sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    finally:
        server.close()
        await server.wait_closed()


async def _register_app(app: Running, key: str) -> None:
    await app.seed_app(APP_A, APP_A_SECRET)
    created = await app.client.post(
        "/v1/apps",
        json={"app_id": APP_A, "app_secret": APP_A_SECRET, "verify_token": "vt-a"},
        headers=bearer(key),
    )
    assert created.status_code == 201, created.text


async def _counts(db: asyncpg.Connection, number: str) -> dict[str, int]:
    return {
        table: await db.fetchval(f"SELECT count(*) FROM {table} WHERE phone_number_id = $1", number)
        for table in ("contacts", "messages", "statuses", "media")
    }


async def test_a_tenants_app_cannot_write_into_another_tenants_number(
    app: Running, db: asyncpg.Connection
) -> None:
    a = await app.create_tenant("Tenant A")
    b = await app.create_tenant("Tenant B")
    await _register_app(app, a["api_key"])
    added = await app.add_number(a["api_key"], NUMBER_A, WABA, app_id=APP_A)
    assert added.status_code == 201, added.text
    assert (await app.add_number(b["api_key"], NUMBER_B, OTHER_WABA)).status_code == 201

    async with listener() as (attacker_url, attacker_saw):
        # B subscribes its own webhook: no event about A's forgeries may reach it.
        put = await app.client.put(
            "/v1/webhooks",
            json={
                "url": attacker_url + "/b-hook",
                "events": ["message.received", "message.status"],
            },
            headers=bearer(b["api_key"]),
        )
        assert put.status_code == 200, put.text
        path = f"/webhook/apps/{APP_A}"
        forged = [
            _messages_body(NUMBER_B, OTHER_WABA, wamid="wamid.forged-text"),
            _messages_body(
                NUMBER_B, OTHER_WABA, wamid="wamid.forged-image", media_id=attacker_url + "/steal"
            ),
            _status_body(NUMBER_B, OTHER_WABA, wamid="wamid.of-b"),
        ]
        for body in forged:
            response = await app.post_webhook(body, secret=APP_A_SECRET, path=path)
            assert response.status_code == 200, response.text
        # A's app still speaks for A's own number.
        own = _messages_body(NUMBER_A, WABA, wamid="wamid.a-own")
        assert (await app.post_webhook(own, secret=APP_A_SECRET, path=path)).status_code == 200
        await wait_idle(db)
        await asyncio.sleep(0.3)  # room for a forward or a media fetch, were one queued

        assert await _counts(db, NUMBER_B) == {
            "contacts": 0,
            "messages": 0,
            "statuses": 0,
            "media": 0,
        }
        assert await db.fetchval("SELECT count(*) FROM forwards") == 0
        orphaned = await db.fetch(
            "SELECT source, orphan_reason, tenant_id FROM events"
            " WHERE orphaned AND phone_number_id = $1",
            NUMBER_B,
        )
        assert len(orphaned) == 3
        assert {(r["source"], r["orphan_reason"], r["tenant_id"]) for r in orphaned} == {
            (f"app:{APP_A}", "source_not_bound", None)
        }
        assert await db.fetchval(
            "SELECT count(*) FROM messages WHERE phone_number_id = $1 AND wamid = 'wamid.a-own'",
            NUMBER_A,
        )
        assert attacker_saw == [], "nothing may be fetched from, or forwarded to, A's URL"

        metrics = (await app.client.get("/metrics")).text
        assert 'wa_events_orphaned_total{reason="source_not_bound"} 3' in metrics

        # The same body from the platform app (B's number's source) is B's: the rule blocks the
        # wrong source, not the content.
        genuine = _messages_body(NUMBER_B, OTHER_WABA, wamid="wamid.forged-text")
        assert (await app.post_webhook(genuine)).status_code == 200
        await wait_idle(db)
        assert (await _counts(db, NUMBER_B))["messages"] == 1


async def test_platform_app_does_not_speak_for_a_number_bound_to_an_own_app(
    app: Running, db: asyncpg.Connection
) -> None:
    a = await app.create_tenant("Tenant A")
    await _register_app(app, a["api_key"])
    assert (await app.add_number(a["api_key"], NUMBER_A, WABA, app_id=APP_A)).status_code == 201
    assert (await app.post_webhook(_messages_body(NUMBER_A, WABA, wamid="wamid.p"))).status_code
    await wait_idle(db)
    assert (await _counts(db, NUMBER_A))["messages"] == 0
    assert (
        await db.fetchval(
            "SELECT orphan_reason FROM events WHERE orphaned AND phone_number_id = $1", NUMBER_A
        )
        == "source_not_bound"
    )


async def test_a_media_id_that_is_a_url_is_never_fetched_with_the_token(
    app: Running, db: asyncpg.Connection
) -> None:
    b = await app.create_tenant("Tenant B")
    assert (await app.add_number(b["api_key"], NUMBER_B, OTHER_WABA)).status_code == 201
    async with listener() as (attacker_url, attacker_saw):
        body = _messages_body(
            NUMBER_B, OTHER_WABA, wamid="wamid.url-media", media_id=attacker_url + "/steal"
        )
        assert (await app.post_webhook(body)).status_code == 200
        await wait_idle(db)
        await asyncio.sleep(0.5)
        media = await db.fetchrow("SELECT state, last_error, media_id FROM media")
        assert media is not None and media["state"] == "failed"
        assert "not one of Meta's" in media["last_error"]
        # The message itself is kept.
        assert await db.fetchval("SELECT type FROM messages WHERE wamid = 'wamid.url-media'") == (
            "image"
        )
        assert attacker_saw == []
    seen = await app.sandbox.get("/_sandbox/requests")
    assert not [r for r in seen.json()["data"] if "steal" in r["path"]]


async def test_app_ids_must_be_proven_before_they_are_stored(
    app: Running, db: asyncpg.Connection
) -> None:
    owner = await app.create_tenant("Owner")
    squatter = await app.create_tenant("Squatter")
    await app.seed_app(APP_A, APP_A_SECRET)
    # The squatter names the app with a secret of its own choosing: Meta does not confirm it.
    squat = await app.client.post(
        "/v1/apps",
        json={"app_id": APP_A, "app_secret": "not-the-secret", "verify_token": "vt"},
        headers=bearer(squatter["api_key"]),
    )
    assert squat.status_code == 422, squat.text
    assert squat.json()["error"]["code"] == "app_not_verified"
    assert "not-the-secret" not in squat.text
    assert await db.fetchval("SELECT count(*) FROM apps") == 0
    asked = await app.sandbox.get("/_sandbox/requests", params={"path_contains": APP_A})
    assert [r["path"].rsplit("/", 1)[-1] for r in asked.json()["data"]] == [APP_A]

    # The owner proves it; the squatter's attempt no longer matters.
    await _register_app(app, owner["api_key"])
    listed = await app.client.get("/v1/apps", headers=bearer(owner["api_key"]))
    assert [a["app_id"] for a in listed.json()["data"]] == [APP_A]
    assert (await app.client.get("/v1/apps", headers=bearer(squatter["api_key"]))).json()[
        "data"
    ] == []

    # A new secret needs the same proof; a new verify token alone does not.
    wrong = await app.client.put(
        f"/v1/apps/{APP_A}", json={"app_secret": "guess"}, headers=bearer(owner["api_key"])
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "app_not_verified"
    await app.seed_app(APP_A, "rotated-secret")
    rotated = await app.client.put(
        f"/v1/apps/{APP_A}",
        json={"app_secret": "rotated-secret", "verify_token": "vt-2"},
        headers=bearer(owner["api_key"]),
    )
    assert rotated.status_code == 200, rotated.text
    signed_new = _messages_body(NUMBER_A, WABA, wamid="wamid.x")
    path = f"/webhook/apps/{APP_A}"
    assert (await app.post_webhook(signed_new, secret="rotated-secret", path=path)).status_code == (
        200
    )
    assert (await app.post_webhook(signed_new, secret=APP_A_SECRET, path=path)).status_code == 403
    handshake = await app.client.get(
        path, params={"hub.mode": "subscribe", "hub.verify_token": "vt-2", "hub.challenge": "9"}
    )
    assert handshake.text == "9"

    # Not deletable while a number is bound to it.
    assert (await app.add_number(owner["api_key"], NUMBER_A, WABA, app_id=APP_A)).status_code == 201
    busy = await app.client.delete(f"/v1/apps/{APP_A}", headers=bearer(owner["api_key"]))
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "app_in_use"
    removed = await app.client.delete(f"/v1/numbers/{NUMBER_A}", headers=bearer(owner["api_key"]))
    assert removed.status_code == 200
    gone = await app.client.delete(f"/v1/apps/{APP_A}", headers=bearer(owner["api_key"]))
    assert gone.status_code == 200, gone.text
    assert await db.fetchval("SELECT count(*) FROM apps") == 0
    assert (await app.post_webhook(signed_new, secret="rotated-secret", path=path)).status_code == (
        403
    )


async def test_an_unknown_app_id_is_remembered_without_a_query_per_request(
    web: Running, db: asyncpg.Connection
) -> None:
    path = "/webhook/apps/4000000000000004"
    body = _messages_body(NUMBER_A, WABA, wamid="wamid.u")
    first = await web.post_webhook(body, secret="whatever", path=path)
    assert first.status_code == 403 and first.json()["error"]["code"] == "signature_invalid"
    # The app appears in the database behind the process's back (another process registered
    # it): this process keeps answering from memory for a short while, asking nothing.
    box_row = await db.fetchrow("SELECT * FROM apps LIMIT 1")
    assert box_row is None
    tenant = await web.create_tenant()
    await db.execute(
        "INSERT INTO apps (app_id, tenant_id, app_secret_enc, verify_token_enc)"
        " VALUES ('4000000000000004', $1::uuid, '\\x00', '\\x00')",
        tenant["id"],
    )
    for _ in range(20):
        again = await web.post_webhook(body, secret="whatever", path=path)
        assert again.status_code == 403
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 0


async def test_events_sent_before_the_number_was_registered_are_adopted(
    app: Running, db: asyncpg.Connection
) -> None:
    # Meta posts as soon as the app is subscribed, which comes before our insert.
    early = _messages_body(NUMBER_A, WABA, wamid="wamid.early")
    assert (await app.post_webhook(early)).status_code == 200
    await wait_idle(db)
    assert await db.fetchval("SELECT orphan_reason FROM events WHERE orphaned") == (
        "unknown_number"
    )
    tenant = await app.create_tenant()
    assert (await app.add_number(tenant["api_key"], NUMBER_A)).status_code == 201
    async with asyncio.timeout(10):
        while not await db.fetchval("SELECT count(*) FROM messages WHERE wamid = 'wamid.early'"):
            await asyncio.sleep(0.05)
    assert await db.fetchval("SELECT count(*) FROM events WHERE orphaned") == 0
    contact = await db.fetchrow("SELECT wa_id, last_inbound_at FROM contacts")
    assert contact["wa_id"] == CUSTOMER and contact["last_inbound_at"] is not None
    detail = await db.fetchval("SELECT detail FROM audit_log WHERE action = 'number.registered'")
    assert detail["adopted_deliveries"] == 1


@pytest.mark.parametrize("source", ["platform", "other_app"])
async def test_orphans_from_another_source_are_not_adopted(
    app: Running, db: asyncpg.Connection, source: str
) -> None:
    a = await app.create_tenant("Tenant A")
    await _register_app(app, a["api_key"])
    early = _messages_body(NUMBER_B, OTHER_WABA, wamid="wamid.from-a")
    if source == "other_app":
        posted = await app.post_webhook(early, secret=APP_A_SECRET, path=f"/webhook/apps/{APP_A}")
    else:
        posted = await app.post_webhook(early)
    assert posted.status_code == 200
    await wait_idle(db)
    b = await app.create_tenant("Tenant B")
    if source == "platform":
        # B binds its number to its own app: what the platform app said is not B's app's word.
        await app.seed_app("5000000000000005", "b-secret")
        created = await app.client.post(
            "/v1/apps",
            json={"app_id": "5000000000000005", "app_secret": "b-secret", "verify_token": "v"},
            headers=bearer(b["api_key"]),
        )
        assert created.status_code == 201
        extra = {"app_id": "5000000000000005"}
    else:
        extra = {}
    added = await app.add_number(b["api_key"], NUMBER_B, OTHER_WABA, **extra)
    assert added.status_code == 201, added.text
    await asyncio.sleep(0.5)
    await wait_idle(db)
    assert await db.fetchval("SELECT count(*) FROM messages") == 0
    assert await db.fetchval("SELECT count(*) FROM events WHERE orphaned") == 1


async def test_a_removed_number_is_not_indexed_for_its_former_owner(
    app: Running, db: asyncpg.Connection
) -> None:
    """What Meta still sends for a removed number is orphaned (adopted if it comes back), not
    written into the former owner's contacts, messages and webhook."""
    b = await app.create_tenant("Tenant B")
    assert (await app.add_number(b["api_key"], NUMBER_B, OTHER_WABA)).status_code == 201
    removed = await app.client.delete(f"/v1/numbers/{NUMBER_B}", headers=bearer(b["api_key"]))
    assert removed.status_code == 200, removed.text

    posted = await app.post_webhook(_messages_body(NUMBER_B, OTHER_WABA, wamid="wamid.after-rm"))
    assert posted.status_code == 200
    await wait_idle(db)
    indexed = await db.fetchval(
        "SELECT count(*) FROM messages WHERE phone_number_id = $1 AND wamid = 'wamid.after-rm'",
        NUMBER_B,
    )
    orphaned = await db.fetchval(
        "SELECT count(*) FROM events WHERE orphaned AND phone_number_id = $1", NUMBER_B
    )
    assert (indexed, orphaned) == (0, 1), "a removed number's inbound is still indexed"


async def test_a_tenant_cannot_take_another_tenants_status_slot(
    app: Running, db: asyncpg.Connection
) -> None:
    """Statuses are unique per number: A's own app naming B's wamid on A's number does not
    take the slot of Meta's real status for B's message."""
    a = await app.create_tenant("Tenant A")
    b = await app.create_tenant("Tenant B")
    await _register_app(app, a["api_key"])
    assert (await app.add_number(a["api_key"], NUMBER_A, WABA, app_id=APP_A)).status_code == 201
    assert (await app.add_number(b["api_key"], NUMBER_B, OTHER_WABA)).status_code == 201

    wamid = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI1QjFDRjM0RDk0RjQ1QkE0MTIA"
    # B's outbound message, as the sender leaves it once Meta accepted it.
    await db.execute(
        """INSERT INTO messages (tenant_id, phone_number_id, wamid, direction, type, status,
                                 recipient, request, payload)
           VALUES ($1, $2, $3, 'out', 'text', 'accepted', '16505551234', '{}', '{}')""",
        uuid.UUID(b["id"]),
        NUMBER_B,
        wamid,
    )
    # A's app speaks for A's own number, naming B's wamid.
    forged = await app.post_webhook(
        _status_body(NUMBER_A, WABA, wamid=wamid, status="read"),
        secret="a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4",
        path=f"/webhook/apps/{APP_A}",
    )
    assert forged.status_code == 200
    await wait_idle(db)
    # Meta's genuine status for B's message, on the platform app.
    real = await app.post_webhook(_status_body(NUMBER_B, OTHER_WABA, wamid=wamid, status="read"))
    assert real.status_code == 200
    await wait_idle(db)
    status = await db.fetchval("SELECT status FROM messages WHERE wamid = $1", wamid)
    owners = await db.fetch(
        "SELECT tenant_id, phone_number_id FROM statuses WHERE wamid = $1", wamid
    )
    assert status == "read", f"B's message stuck at {status!r}; status rows: {owners}"


async def test_a_number_its_owner_removed_can_move_to_another_tenant(
    app: Running, db: asyncpg.Connection
) -> None:
    """Once B removed the number, whoever Meta accepts a token from for it may register it.
    B's history stays B's; A starts with none of it, and a customer who wrote to B is a new
    contact for A."""
    a = await app.create_tenant("Tenant A")
    b = await app.create_tenant("Tenant B")
    assert (await app.add_number(b["api_key"], NUMBER_B, OTHER_WABA)).status_code == 201
    switched = await app.client.patch(
        f"/v1/numbers/{NUMBER_B}", json={"bot_enabled": True}, headers=bearer(b["api_key"])
    )
    assert switched.status_code == 200, switched.text
    before = _messages_body(NUMBER_B, OTHER_WABA, wamid="wamid.to-b")
    assert (await app.post_webhook(before)).status_code == 200
    await wait_idle(db)
    removed = await app.client.delete(f"/v1/numbers/{NUMBER_B}", headers=bearer(b["api_key"]))
    assert removed.status_code == 200, removed.text

    token = await app.seed_number(NUMBER_B, OTHER_WABA, token="EAAG-new-owner-token")
    taken = await app.client.post(
        "/v1/numbers",
        json={"phone_number_id": NUMBER_B, "waba_id": OTHER_WABA, "access_token": token},
        headers=bearer(a["api_key"]),
    )
    assert taken.status_code == 201, taken.text
    assert taken.json()["bot_enabled"] is False and taken.json()["throughput_mps"] == 80
    after = _messages_body(NUMBER_B, OTHER_WABA, wamid="wamid.to-a")
    assert (await app.post_webhook(after)).status_code == 200
    await wait_idle(db)

    rows = await db.fetch(
        "SELECT m.wamid, m.tenant_id::text AS tenant, c.tenant_id::text AS contact_tenant"
        " FROM messages m JOIN contacts c ON c.id = m.contact_id ORDER BY m.wamid"
    )
    assert [tuple(r) for r in rows] == [
        ("wamid.to-a", a["id"], a["id"]),
        ("wamid.to-b", b["id"], b["id"]),
    ]
    for tenant, wamid in ((a, "wamid.to-a"), (b, "wamid.to-b")):
        listed = await app.client.get(
            f"/v1/contacts/{CUSTOMER}/messages",
            params={"phone_number_id": NUMBER_B},
            headers=bearer(tenant["api_key"]),
        )
        assert listed.status_code == 200, listed.text
        assert [m["wamid"] for m in listed.json()["data"]] == [wamid]
    # B cannot take it back while A has it.
    back = await app.add_number(b["api_key"], NUMBER_B, OTHER_WABA)
    assert back.status_code == 409 and back.json()["error"]["code"] == "number_exists"
