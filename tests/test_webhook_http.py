"""The webhook endpoints over real HTTP: handshake, signatures, size limit, quarantine."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.conftest import NUMBER_A, Running, corpus, wait_idle
from wa_cloud.db import channels
from wa_cloud.inbound.signature import sign


async def _stored(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM deliveries")


async def test_handshake_echoes_the_challenge(web: Running) -> None:
    response = await web.client.get(
        "/webhook",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": "platform-verify-token",
            "hub.challenge": "1158201444",
        },
    )
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {
            "hub.mode": "unsubscribe",
            "hub.verify_token": "platform-verify-token",
            "hub.challenge": "1",
        },
        {"hub.challenge": "1"},
    ],
)
async def test_handshake_refused(web: Running, params: dict[str, str]) -> None:
    response = await web.client.get("/webhook", params=params)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "verification_failed"


async def test_valid_signature_is_stored_before_200(web: Running, db: asyncpg.Connection) -> None:
    body = corpus("messages/text.json")
    response = await web.post_webhook(body)
    assert response.status_code == 200
    row = await db.fetchrow("SELECT source, body, state FROM deliveries")
    assert (row["source"], bytes(row["body"]), row["state"]) == ("platform", body, "pending")


async def test_a_stored_delivery_is_announced_to_workers_after_its_commit(
    web: Running, db: asyncpg.Connection
) -> None:
    heard: asyncio.Queue[int] = asyncio.Queue()

    def listener(_conn: object, _pid: int, _channel: str, _payload: str) -> None:
        # What a worker woken by this would find: the delivery already committed.
        heard.put_nowait(0)

    await db.add_listener(channels.DELIVERIES, listener)
    try:
        response = await web.post_webhook(corpus("messages/text.json"))
        assert response.status_code == 200
        await asyncio.wait_for(heard.get(), 5)
        assert await _stored(db) == 1
    finally:
        await db.remove_listener(channels.DELIVERIES, listener)


async def test_missing_signature_is_401_and_nothing_stored(
    web: Running, db: asyncpg.Connection
) -> None:
    response = await web.client.post("/webhook", content=corpus("messages/text.json"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "signature_missing"
    assert await _stored(db) == 0


@pytest.mark.parametrize(
    "header",
    ["sha256=" + "0" * 64, "sha1=abc", "sha256=", "garbage"],
)
async def test_wrong_signature_is_403_and_nothing_stored(
    web: Running, db: asyncpg.Connection, header: str
) -> None:
    response = await web.client.post(
        "/webhook",
        content=corpus("messages/text.json"),
        headers={"x-hub-signature-256": header},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "signature_invalid"
    assert await _stored(db) == 0


async def test_signature_with_another_secret_is_403(web: Running, db: asyncpg.Connection) -> None:
    response = await web.post_webhook(corpus("messages/text.json"), secret="not-the-app-secret")
    assert response.status_code == 403
    assert await _stored(db) == 0


async def test_non_ascii_body_raw_signature(web: Running, db: asyncpg.Connection) -> None:
    body = corpus("messages/text_non_ascii.json")
    assert not body.isascii()
    assert (await web.post_webhook(body)).status_code == 200
    assert bytes(await db.fetchval("SELECT body FROM deliveries")) == body


async def test_non_ascii_body_signed_over_escaped_unicode(
    web: Running, db: asyncpg.Connection
) -> None:
    body = corpus("messages/text_non_ascii.json")
    text = body.decode()
    # Meta's documented form: every non-ASCII UTF-16 code unit as a lowercase \uXXXX escape.
    escaped = "".join(
        ch
        if ord(ch) < 128
        else "".join(
            f"\\u{int.from_bytes(ch.encode('utf-16-be')[i : i + 2], 'big'):04x}"
            for i in range(0, len(ch.encode("utf-16-be")), 2)
        )
        for ch in text
    ).encode()
    assert b"\\ud83d" in escaped or b"\\u00" in escaped
    response = await web.client.post(
        "/webhook",
        content=body,
        headers={"x-hub-signature-256": sign(escaped, web.settings.app_secret or "")},
    )
    assert response.status_code == 200
    assert bytes(await db.fetchval("SELECT body FROM deliveries")) == body


async def test_escaped_form_does_not_rescue_a_tampered_body(
    web: Running, db: asyncpg.Connection
) -> None:
    body = corpus("messages/text_non_ascii.json")
    tampered = body.replace("ä".encode(), b"a", 1)
    response = await web.client.post(
        "/webhook",
        content=tampered,
        headers={"x-hub-signature-256": sign(body, web.settings.app_secret or "")},
    )
    assert response.status_code == 403
    assert await _stored(db) == 0


async def test_body_over_3_mb_is_413(web: Running, db: asyncpg.Connection) -> None:
    body = b'{"object": "whatsapp_business_account", "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    response = await web.post_webhook(body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await _stored(db) == 0


async def test_chunked_body_over_3_mb_is_413(web: Running, db: asyncpg.Connection) -> None:
    async def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(4):
            yield b"x" * (1024 * 1024)

    response = await web.client.post(
        "/webhook", content=chunks(), headers={"x-hub-signature-256": "sha256=" + "0" * 64}
    )
    assert response.status_code == 413
    assert await _stored(db) == 0


async def test_body_of_exactly_3_mb_is_accepted(web: Running, db: asyncpg.Connection) -> None:
    head = b'{"object": "whatsapp_business_account", "entry": [], "pad": "'
    body = head + b"x" * (3 * 1024 * 1024 - len(head) - 2) + b'"}'
    assert len(body) == 3 * 1024 * 1024
    assert (await web.post_webhook(body)).status_code == 200
    assert await _stored(db) == 1


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("invalid/not_json.json", "invalid_json"),
        ("invalid/not_envelope.json", "not_whatsapp_envelope"),
        ("invalid/wrong_object.json", "not_whatsapp_envelope"),
    ],
)
async def test_signed_garbage_is_acknowledged_and_quarantined(
    app: Running, db: asyncpg.Connection, name: str, code: str
) -> None:
    body = corpus(name)
    response = await app.post_webhook(body)
    assert response.status_code == 200  # Meta would retry it for a week for nothing
    await wait_idle(db)
    row = await db.fetchrow(
        "SELECT d.state, d.body, q.code, q.reason FROM deliveries d"
        " JOIN quarantine q ON q.delivery_id = d.id"
    )
    assert row["state"] == "quarantined"
    assert bytes(row["body"]) == body
    assert row["code"] == code
    assert row["reason"]
    assert await db.fetchval("SELECT count(*) FROM messages") == 0


async def test_tenant_app_webhooks_use_that_apps_secret(
    app: Running, db: asyncpg.Connection
) -> None:
    tenant = await app.create_tenant()
    headers = {"authorization": f"Bearer {tenant['api_key']}"}
    await app.seed_app("2000000000000002", "tenant-secret")
    created = await app.client.post(
        "/v1/apps",
        json={
            "app_id": "2000000000000002",
            "app_secret": "tenant-secret",
            "verify_token": "tenant-verify",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["callback_url"].endswith("/webhook/apps/2000000000000002")
    assert "tenant-secret" not in created.text
    response = await app.add_number(tenant["api_key"], NUMBER_A, app_id="2000000000000002")
    assert response.status_code == 201

    path = "/webhook/apps/2000000000000002"
    handshake = await app.client.get(
        path,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": "tenant-verify",
            "hub.challenge": "42",
        },
    )
    assert (handshake.status_code, handshake.text) == (200, "42")
    platform_token = await app.client.get(
        path,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": "platform-verify-token",
            "hub.challenge": "42",
        },
    )
    assert platform_token.status_code == 403

    body = corpus("messages/text.json")
    assert (await app.post_webhook(body, path=path)).status_code == 403  # platform secret
    assert (await app.post_webhook(body, path=path, secret="tenant-secret")).status_code == 200
    await wait_idle(db)
    assert await db.fetchval("SELECT source FROM deliveries") == "app:2000000000000002"
    assert await db.fetchval("SELECT count(*) FROM messages") == 1

    # An unknown app id is answered as a wrong signature: which apps we serve is not told.
    unknown = await app.post_webhook(body, path="/webhook/apps/999", secret="tenant-secret")
    assert unknown.status_code == 403
    assert unknown.json()["error"]["code"] == "signature_invalid"
    unsigned = await app.client.post("/webhook/apps/999", content=body)
    assert unsigned.status_code == 401
    handshake = await app.client.get(
        "/webhook/apps/999",
        params={"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "1"},
    )
    assert handshake.status_code == 403
