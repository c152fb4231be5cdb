"""Web-session numbers end to end, against the sandbox's Evolution API-compatible gateway on
loopback: registered, its QR code shown, scanned, customers answered by the assistant through
the gateway, the business writing from its phone, sessions dropping and coming back, and two
tenants kept apart.

What is asserted: the exact calls the gateway received, the rows in the database, and the
answers of our API.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import (
    Meta,
    give_credits,
    meta_running,
    replies_done,
    start_worker,
)
from tests.test_status_page import (
    CHROMIUM,
    SMTP_PASSWORD,
    SMTP_USER,
    FakeSmtp,
    chromium,
    png_size,
    smtp_server,
)
from wa_cloud.config import Settings
from wa_cloud.events import InboundMessage, StatusUpdate
from wa_cloud.inbound.gateway import parse_gateway_delivery
from wa_cloud.inbound.parse import InvalidDelivery
from wa_cloud.providers.websession import SECRET_HEADER
from wa_cloud.sandbox.gateway import API_KEY
from wa_cloud.tenants.links import make_link

PHONE = "5511987654321"
CUSTOMER = "5511912345678"


def gateway(meta: Meta) -> dict[str, str]:
    return {"url": str(meta.sandbox.base_url).rstrip("/") + "/evolution", "api_key": API_KEY}


async def register(meta: Meta, phone: str = PHONE, api_key: str | None = None) -> dict[str, Any]:
    response = await meta.app.client.post(
        "/v1/numbers",
        json={"provider": "websession", "display_phone_number": phone, "gateway": gateway(meta)},
        headers={"authorization": f"Bearer {api_key or meta.api_key}"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def gateway_view(meta: Meta) -> dict[str, Any]:
    response = await meta.sandbox.get("/_gateway")
    assert response.status_code == 200
    return dict(response.json())


async def instance_of(meta: Meta, phone: str = PHONE, timeout: float = 10.0) -> dict[str, Any]:
    """The gateway instance of the number, once the watchdog created it."""
    async with asyncio.timeout(timeout):
        while True:
            for instance in (await gateway_view(meta))["instances"]:
                if instance["name"].startswith(f"wa-{phone}-"):
                    return dict(instance)
            await asyncio.sleep(0.05)


async def qr(meta: Meta, phone: str = PHONE, api_key: str | None = None) -> httpx.Response:
    return await meta.app.client.get(
        f"/v1/numbers/{phone}/qr", headers={"authorization": f"Bearer {api_key or meta.api_key}"}
    )


async def wait_state(
    meta: Meta, state: str, phone: str = PHONE, timeout: float = 10.0
) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                shown = (await qr(meta, phone)).json()
                if shown["state"] == state:
                    return dict(shown)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never {state}: {shown}") from None


async def control(meta: Meta, instance: str, action: str, **body: Any) -> dict[str, Any]:
    response = await meta.sandbox.post(f"/_gateway/{instance}/{action}", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def connected(meta: Meta, phone: str = PHONE) -> str:
    """Register the number, wait for its QR, scan it with the right phone: the instance."""
    await register(meta, phone)
    instance = await instance_of(meta, phone)
    await wait_state(meta, "qr", phone)
    scanned = await control(meta, instance["name"], "scan", phone=phone)
    assert scanned["webhook_status"] == 200
    await wait_state(meta, "open", phone)
    return str(instance["name"])


async def sent_texts(meta: Meta, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            sent = [s for s in (await gateway_view(meta))["sent"] if s["route"] == "sendText"]
            if len(sent) >= count:
                return sent
            await asyncio.sleep(0.05)


async def test_registered_shown_scanned_and_answered_by_the_assistant(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, models=True) as meta:
        number = await register(meta)
        assert number["provider"] == "websession"
        assert number["state"] == "connecting"
        assert number["phone_number_id"] == PHONE and number["waba_id"] is None
        instance = await instance_of(meta)
        # Our webhook, with the secret in its header, and the events we take.
        assert instance["webhook_url"] == f"{meta.app.base_url}/webhook/websession/{PHONE}"
        shown = await wait_state(meta, "qr")
        assert shown["qr_base64"].startswith("data:image/png;base64,")
        assert shown["pairing_code"] is not None
        await control(meta, instance["name"], "scan", phone=PHONE)
        shown = await wait_state(meta, "open")
        assert shown["qr_base64"] is None

        await give_credits(db, meta)
        configured = await meta.app.client.put(
            f"/v1/numbers/{PHONE}/bot", json={"debounce_seconds": 0}, headers=meta.tenant()
        )
        assert configured.status_code == 200, configured.text
        wrote = await control(meta, instance["name"], "inbound", **{"from": CUSTOMER, "text": "oi"})
        assert wrote["webhook_status"] == 200
        sent = await sent_texts(meta, 1)
        assert sent[0]["instance"] == instance["name"]
        assert sent[0]["body"] == {"number": CUSTOMER, "text": "oi"}  # the echo model
        # Marked read in the customer's chat.
        reads = (await gateway_view(meta))["reads"]
        assert reads[0]["readMessages"] == [
            {"remoteJid": f"{CUSTOMER}@s.whatsapp.net", "fromMe": False, "id": wrote["id"]}
        ]
        async with asyncio.timeout(10):  # the gateway's message id, stored once accepted
            while not await db.fetchval("SELECT 1 FROM messages WHERE wamid = $1", sent[0]["id"]):
                await asyncio.sleep(0.05)
        rows = await db.fetch(
            "SELECT direction, author, text, wamid, status FROM messages"
            " WHERE phone_number_id = $1 ORDER BY created_at",
            PHONE,
        )
        assert [(r["direction"], r["text"]) for r in rows] == [("in", "oi"), ("out", "oi")]
        assert rows[0]["wamid"] == wrote["id"]
        assert rows[1]["author"] == "bot" and rows[1]["wamid"] == sent[0]["id"]
        # The gateway's acks move our message forward, as Meta's statuses do.
        async with asyncio.timeout(10):
            while (
                await db.fetchval("SELECT status FROM messages WHERE wamid = $1", sent[0]["id"])
                != "delivered"
            ):
                await asyncio.sleep(0.05)


async def test_duplicates_and_a_killed_worker_give_one_reply(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, models=True, run_worker=False) as meta:
        worker = start_worker(meta.app.settings)
        try:
            instance = await connected(meta)
            await give_credits(db, meta)
            await configure_bot_on(meta)
            worker.kill()
            worker.wait()
            wrote = await control(
                meta, instance, "inbound", **{"from": CUSTOMER, "text": "preço?", "times": 5}
            )
            assert wrote["webhook_statuses"] == [200] * 5
            worker = start_worker(meta.app.settings)
            await replies_done(db, 1, timeout=20)
            await sent_texts(meta, 1)
            await asyncio.sleep(0.5)
            assert len(await sent_texts(meta, 1)) == 1
            assert (
                await db.fetchval("SELECT count(*) FROM messages WHERE wamid = $1", wrote["id"])
                == 1
            )
        finally:
            worker.kill()
            worker.wait()


async def configure_bot_on(meta: Meta) -> None:
    response = await meta.app.client.put(
        f"/v1/numbers/{PHONE}/bot", json={"debounce_seconds": 0}, headers=meta.tenant()
    )
    assert response.status_code == 200, response.text


async def test_the_business_writing_from_its_phone_pauses_the_assistant_and_groups_are_ignored(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, models=True) as meta:
        instance = await connected(meta)
        await give_credits(db, meta)
        await configure_bot_on(meta)
        typed = await control(
            meta, instance, "inbound", from_me=True, to=CUSTOMER, text="Já te respondo"
        )
        assert typed["webhook_status"] == 200
        async with asyncio.timeout(10):
            while not await db.fetchval(
                "SELECT bot_paused FROM contacts WHERE phone_number_id = $1 AND wa_id = $2",
                PHONE,
                CUSTOMER,
            ):
                await asyncio.sleep(0.05)
        row = await db.fetchrow("SELECT * FROM messages WHERE wamid = $1", typed["id"])
        assert (row["direction"], row["author"], row["status"]) == ("out", "human", "sent")
        await control(meta, instance, "inbound", **{"from": CUSTOMER, "text": "oi?"})
        # A group message from someone else: stored, never answered.
        group = await control(
            meta, instance, "inbound", **{"from": "5511900000001", "text": "oi", "group": "1203"}
        )
        await replies_done(db, 1)
        async with asyncio.timeout(10):
            while not await db.fetchval("SELECT 1 FROM messages WHERE wamid = $1", group["id"]):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert await sent_texts_now(meta) == []
        outcome = await db.fetchval("SELECT outcome FROM replies ORDER BY id LIMIT 1")
        assert outcome == "skipped: conversation paused"


async def sent_texts_now(meta: Meta) -> list[dict[str, Any]]:
    return [s for s in (await gateway_view(meta))["sent"] if s["route"] == "sendText"]


async def test_dropped_session_reconnects_and_a_logout_needs_a_new_scan(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings) as meta:
        instance = await connected(meta)
        # The phone logs the device out: a new QR code, the tenant told.
        dropped = await control(meta, instance, "drop", code=401)
        assert dropped["webhook_status"] == 200
        shown = await wait_state(meta, "qr")
        assert shown["qr_base64"].startswith("data:image/png;base64,")
        events = await db.fetch(
            "SELECT kind FROM events WHERE phone_number_id = $1 AND field = 'websession'"
            " ORDER BY id",
            PHONE,
        )
        assert "connection.update" in [e["kind"] for e in events]
        async with asyncio.timeout(10):
            while not await db.fetchval(
                "SELECT 1 FROM audit_log WHERE action = 'number.session_needs_scan'"
            ):
                await asyncio.sleep(0.05)
        await control(meta, instance, "scan", phone=PHONE)
        await wait_state(meta, "open")
        # Dropped without a word: the watchdog's check finds it closed and reconnects.
        await control(meta, instance, "drop", code=428, silent=True)
        await db.execute("UPDATE web_sessions SET due_at = now() WHERE phone_number_id = $1", PHONE)
        await db.execute("SELECT pg_notify('wa_sessions', $1)", PHONE)
        await wait_state(meta, "closed")
        await db.execute("UPDATE web_sessions SET due_at = now() WHERE phone_number_id = $1", PHONE)
        await db.execute("SELECT pg_notify('wa_sessions', $1)", PHONE)
        await wait_state(meta, "qr")


async def test_wrong_phone_is_refused_and_logged_out(settings: Settings) -> None:
    async with meta_running(settings) as meta:
        await register(meta)
        instance = (await instance_of(meta))["name"]
        await wait_state(meta, "qr")
        await control(meta, instance, "scan", phone="5511000000000")
        shown = await wait_state(meta, "refused")
        assert "is not this number" in shown["reason"]
        async with asyncio.timeout(10):
            while True:
                found = [
                    i for i in (await gateway_view(meta))["instances"] if i["name"] == instance
                ]
                if found[0]["logged_out"]:
                    break
                await asyncio.sleep(0.05)


async def test_template_to_a_web_session_is_refused(settings: Settings) -> None:
    async with meta_running(settings) as meta:
        await register(meta)
        response = await meta.app.client.post(
            "/v1/messages",
            json={
                "from": PHONE,
                "to": CUSTOMER,
                "type": "template",
                "template": {"name": "order_update", "language": {"code": "en_US"}},
            },
            headers=meta.tenant(),
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "templates_unsupported"


FORGED_ID = "3EB0F0RGED0X1"  # a message id nothing else posts


async def test_gateway_events_need_the_numbers_secret(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings) as meta:
        other = await meta.app.create_tenant("Other Co")
        await register(meta)
        await register(meta, "5511955554444", api_key=other["api_key"])
        mine, theirs = await instance_of(meta), await instance_of(meta, "5511955554444")
        assert mine["name"] != theirs["name"]
        body = {
            "event": "messages.upsert",
            "instance": mine["name"],
            "data": {
                "key": {
                    "remoteJid": f"{CUSTOMER}@s.whatsapp.net",
                    "fromMe": False,
                    "id": FORGED_ID,
                },
                "message": {"conversation": "oi"},
                "messageTimestamp": 1761050400,
            },
        }
        for headers in ({}, {SECRET_HEADER: "wrong"}):
            answer = await meta.app.client.post(
                f"/webhook/websession/{PHONE}", json=body, headers=headers
            )
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"]["code"] == "invalid_gateway_secret"
        # The other tenant's gateway events, posted with its own secret to our number's URL.
        secret = await gateway_secret(meta, theirs["name"])
        answer = await meta.app.client.post(
            f"/webhook/websession/{PHONE}", json=body, headers={SECRET_HEADER: secret}
        )
        assert answer.status_code == 403
        # Nothing stored: no delivery carries the posted message (the gateways' own QR events
        # keep arriving meanwhile, so a count of all deliveries would race them).
        stored = await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE position(convert_to($1, 'UTF8') IN body) > 0",
            FORGED_ID,
        )
        assert stored == 0
        # Its own URL with its secret, but naming our instance: stored, and kept as orphaned.
        answer = await meta.app.client.post(
            "/webhook/websession/5511955554444", json=body, headers={SECRET_HEADER: secret}
        )
        assert answer.status_code == 200
        async with asyncio.timeout(10):
            while not await db.fetchval(
                "SELECT 1 FROM events WHERE orphaned AND orphan_reason = 'source_not_bound'"
            ):
                await asyncio.sleep(0.05)
        assert await db.fetchval("SELECT count(*) FROM messages WHERE wamid = $1", FORGED_ID) == 0
        # Its own instance's events are its number's only.
        answer = await meta.app.client.post(
            "/webhook/websession/5511955554444",
            json={**body, "instance": theirs["name"]},
            headers={SECRET_HEADER: secret},
        )
        assert answer.status_code == 200
        async with asyncio.timeout(10):
            while not await db.fetchval("SELECT 1 FROM messages WHERE wamid = $1", FORGED_ID):
                await asyncio.sleep(0.05)
        owner = await db.fetchval(
            "SELECT phone_number_id FROM messages WHERE wamid = $1", FORGED_ID
        )
        assert owner == "5511955554444"


async def gateway_secret(meta: Meta, instance: str) -> str:
    """The secret the gateway holds for an instance (what it sends in its webhooks)."""
    response = await meta.sandbox.get("/_gateway/secrets")
    return str(response.json()[instance])


async def test_qr_code_on_the_status_page_in_headless_chromium(
    settings: Settings, tmp_path: Path
) -> None:
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip("chromium is not installed")
    async with meta_running(settings) as meta:
        await register(meta)
        instance = (await instance_of(meta))["name"]
        shown = await wait_state(meta, "qr")
        link = make_link(meta.app.settings, uuid.UUID(meta.tenant_id))
        waiting, linked = tmp_path / "waiting.png", tmp_path / "linked.png"
        dom = await chromium(f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", link)
        await chromium(
            f"--user-data-dir={tmp_path / 'profile-a'}",
            "--window-size=412,1400",
            f"--screenshot={waiting}",
            link,
        )
        await control(meta, instance, "scan", phone=PHONE)
        await wait_state(meta, "open")
        await chromium(
            f"--user-data-dir={tmp_path / 'profile-b'}",
            "--window-size=412,1400",
            f"--screenshot={linked}",
            link,
        )
    text = dom.decode()
    assert f'src="{shown["qr_base64"]}"' in text
    assert "Waiting for a scan" in text and shown["pairing_code"] in text
    assert png_size(waiting) == (412, 1400)
    assert waiting.read_bytes() != linked.read_bytes(), "the QR code is not in the picture"


async def test_a_session_needing_a_scan_is_forwarded_and_mailed_and_delete_ends_it(
    settings: Settings, db: asyncpg.Connection
) -> None:
    fake = FakeSmtp(SMTP_USER, SMTP_PASSWORD)
    async with smtp_server(fake) as port:
        smtp_url = f"smtp+insecure://mailer%40example.test:s3cret%3Ap%40ss%2Fword@127.0.0.1:{port}"
        async with meta_running(replace(settings, smtp_url=smtp_url)) as meta:
            await db.execute(
                "UPDATE tenants SET email = 'owner@shop.test' WHERE id = $1::uuid", meta.tenant_id
            )
            subscribed = await meta.app.client.put(
                "/v1/webhooks",
                json={"url": f"{meta.app.base_url}/nowhere", "events": ["number.updated"]},
                headers=meta.tenant(),
            )
            assert subscribed.status_code in (200, 201), subscribed.text
            instance = await connected(meta)
            await control(meta, instance, "drop", code=401)
            await wait_state(meta, "qr")
            async with asyncio.timeout(10):
                while not fake.received:
                    await asyncio.sleep(0.05)
            [mail] = fake.received
            message = mail.message()
            assert mail.recipients == ["owner@shop.test"]
            assert f"+{PHONE}" in message["Subject"]
            body = message.get_body(("plain",))
            assert body is not None and f"{meta.app.base_url}/t/" in body.get_content()
            forwarded = await db.fetch(
                "SELECT payload FROM forwards WHERE event = 'number.updated' ORDER BY created_at"
            )
            states = [f["payload"]["state"] for f in forwarded]
            assert "open" in states and "logged_out" in states

            removed = await meta.app.client.delete(f"/v1/numbers/{PHONE}", headers=meta.tenant())
            assert removed.status_code == 200, removed.text
            assert removed.json()["deregistered"] is True
            names = [i["name"] for i in (await gateway_view(meta))["instances"]]
            assert instance not in names
            assert (await qr(meta)).status_code == 404


def test_gateway_events_in_meta_shapes() -> None:
    """The contract's shapes: a LID chat keeps its phone, a group names its member, acks are
    statuses, and a body that is not a gateway event is quarantined."""
    lid_chat = {
        "event": "messages.upsert",
        "data": {
            "key": {
                "remoteJid": "98765432109876@lid",
                "remoteJidAlt": f"{CUSTOMER}@s.whatsapp.net",
                "fromMe": False,
                "id": "3A0F",
                "addressingMode": "lid",
            },
            "pushName": "Maria",
            "message": {"imageMessage": {"mimetype": "image/jpeg", "caption": "nota"}},
            "messageTimestamp": 1761050520,
        },
    }
    [message] = parse_gateway_delivery(json.dumps(lid_chat).encode(), PHONE).events
    assert isinstance(message, InboundMessage)
    assert message.sender.wa_id == CUSTOMER and message.sender.user_id == "98765432109876@lid"
    assert message.type == "image" and message.text == "nota"
    assert message.raw["image"] == {"id": "3A0F", "mime_type": "image/jpeg", "caption": "nota"}
    # A group member named by phone first and by LID second keeps both.
    member = {
        "event": "messages.upsert",
        "data": {
            "key": {
                "remoteJid": "120363000000000000@g.us",
                "participant": f"{CUSTOMER}@s.whatsapp.net",
                "participantAlt": "98765432109876@lid",
                "fromMe": False,
                "id": "3A10",
            },
            "message": {"conversation": "hola"},
            "messageTimestamp": 1761050521,
        },
    }
    [said] = parse_gateway_delivery(json.dumps(member).encode(), PHONE).events
    assert isinstance(said, InboundMessage)
    assert said.sender.wa_id == CUSTOMER and said.sender.user_id == "98765432109876@lid"
    ack = {
        "event": "messages.update",
        "data": {
            "keyId": "3EB0",
            "remoteJid": f"{CUSTOMER}@s.whatsapp.net",
            "fromMe": True,
            "status": "READ",
        },
    }
    [status] = parse_gateway_delivery(json.dumps(ack).encode(), PHONE).events
    assert isinstance(status, StatusUpdate)
    assert (status.wamid, status.status, status.recipient_id) == ("3EB0", "read", CUSTOMER)
    with pytest.raises(InvalidDelivery):
        parse_gateway_delivery(b'{"entry": []}', PHONE)


async def test_a_gateway_repeating_a_message_id_fails_nobody_elses_send(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """A tenant's gateway answers every send with one id: its sends are accepted (the id kept
    once), and another tenant's Cloud API sends, written in the same groups, are unharmed."""
    async with meta_running(settings) as meta:
        instance = await connected(meta)
        await control(meta, instance, "misbehave", fixed_id="SAMEID")
        await meta.customer_writes("hi", sender="16505551234")  # number A's window opens
        ids = []
        for n in range(4):
            answer = await meta.app.client.post(
                "/v1/messages",
                json={
                    "from": PHONE,
                    "to": f"551190000000{n}",
                    "type": "text",
                    "text": {"body": f"oi {n}"},
                },
                headers=meta.tenant(),
            )
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        cloud = await meta.send(to="16505551234", type="text", text={"body": "ok"})
        async with asyncio.timeout(15):
            while True:
                rows = await db.fetch(
                    "SELECT status, wamid FROM messages WHERE id = ANY($1::uuid[])", ids
                )
                if all(r["status"] in ("accepted", "sent", "delivered") for r in rows):
                    break
                await asyncio.sleep(0.05)
        assert sorted(r["wamid"] or "" for r in rows) == ["", "", "", "SAMEID"]
        assert cloud.status_code == 202, cloud.text
        await meta.wait_status(cloud.json()["id"], "accepted", "sent", "delivered", "read")
