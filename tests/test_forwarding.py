"""Event forwarding to tenants' own webhooks: configuration, signing, once per event, retries.

A loopback receiver (a small Starlette app) stands in for the tenant's endpoint: it records
every request and answers from a script (503 for a while, then 200; a 400; a 429 with
Retry-After), so retries are seen from the receiving side, as the tenant would see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import (
    NUMBER_A,
    WABA,
    Running,
    bound_socket,
    corpus,
    serve,
    serve_asgi,
    wait_idle,
)
from tests.test_secrets import columns_containing, rendered
from wa_cloud.backoff import retry_after
from wa_cloud.config import Settings
from wa_cloud.forwarding.events import enqueue_forward
from wa_cloud.forwarding.forwarder import (
    MAX_IN_FLIGHT,
    MAX_IN_FLIGHT_PER_TENANT,
    Answer,
    signature,
    verify,
)
from wa_cloud.secretbox import SecretBox
from wa_cloud.tenants.rotation import rotate

ALL_EVENTS = ["message.received", "message.status", "number.updated", "template.updated"]
TEXT_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTM3MkVBMDhDQUIzM0U3MUMwMgA="


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Retries a few tens of milliseconds apart, so a down-then-up endpoint takes no time."""
    return replace(settings, forward_retry_base_seconds=0.05, forward_max_attempts=8)


@dataclass
class Received:
    headers: httpx.Headers
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


@dataclass
class Receiver:
    """The tenant's endpoint: answers `script` in order, then `default`."""

    script: list[int] = field(default_factory=list)
    default: int = 200
    retry_after: str | None = None
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.requests.append(Received(httpx.Headers(request.headers), body, time.monotonic()))
            status = self.script.pop(0) if self.script else self.default
            headers = {"retry-after": self.retry_after} if self.retry_after else {}
            text = "ok" if status < 300 else f"receiver says no ({status})"
            return Response(text, status_code=status, headers=headers)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    @contextlib.asynccontextmanager
    async def serving(self, sock: socket.socket | None = None) -> AsyncIterator[str]:
        async with serve_asgi(self.app(), sock) as base:
            self.url = base + "/hook"
            yield self.url


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with rec.serving():
        yield rec


def auth(tenant: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {tenant['api_key']}"}


async def put_hook(
    app: Running, tenant: dict[str, Any], url: str, events: list[str] | None = None
) -> str:
    response = await app.client.put(
        "/v1/webhooks", json={"url": url, "events": events or ALL_EVENTS}, headers=auth(tenant)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["secret"])


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def settled(db: asyncpg.Connection, count: int = 1) -> list[asyncpg.Record]:
    """Wait until `count` forwards exist and none is pending; return them, oldest first."""

    async def done() -> bool:
        return bool(
            await db.fetchval(
                "SELECT count(*) = $1 AND count(*) FILTER (WHERE state = 'pending') = 0"
                " FROM forwards",
                count,
            )
        )

    await eventually(done)
    return await db.fetch("SELECT * FROM forwards ORDER BY created_at, id")


def assert_signed(request: Received, secret: str) -> None:
    """Verified independently of the service's own code: HMAC-SHA256 over `<ts>.<body>`."""
    timestamp = request.headers["x-wa-cloud-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert request.headers["x-wa-cloud-signature"] == f"sha256={expected}"
    assert request.headers["content-type"] == "application/json"


# --- configuration ---------------------------------------------------------------------------


async def test_put_get_delete_webhook(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    missing = await app.client.get("/v1/webhooks", headers=auth(tenant))
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "not_found"

    first = await app.client.put(
        "/v1/webhooks",
        json={
            "url": "https://hooks.example/wa?team=7",
            "events": ["message.status", "message.received", "message.received"],
        },
        headers=auth(tenant),
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"url", "events", "secret"}
    assert body["url"] == "https://hooks.example/wa?team=7"
    assert body["events"] == ["message.received", "message.status"]
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40

    shown = await app.client.get("/v1/webhooks", headers=auth(tenant))
    assert shown.status_code == 200, shown.text
    assert set(shown.json()) == {"url", "events", "created_at", "updated_at"}
    assert shown.json()["events"] == ["message.received", "message.status"]
    assert body["secret"] not in shown.text

    second = await app.client.put(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/other", "events": ["bot.reply"]},
        headers=auth(tenant),
    )
    assert second.status_code == 200, second.text
    secrets = [body["secret"], second.json()["secret"]]
    assert secrets[0] != secrets[1], "every PUT makes a new secret"
    again = (await app.client.get("/v1/webhooks", headers=auth(tenant))).json()
    assert again["url"] == "http://127.0.0.1:9/other" and again["events"] == ["bot.reply"]
    assert again["created_at"] == shown.json()["created_at"]
    assert again["updated_at"] >= shown.json()["updated_at"]

    # Stored sealed, for its tenant's row only, and nowhere in the clear.
    for secret in secrets:
        assert await columns_containing(db, secret) == []
    sealed = await db.fetchval("SELECT secret_enc FROM tenant_webhooks")
    box = SecretBox(app.settings.secret_key or "")
    assert box.open(sealed, context=f"tenant_webhooks.secret:{tenant['id']}") == secrets[1]
    log = await app.client.get("/v1/events", headers=auth(tenant))
    assert [e["action"] for e in log.json()["data"]][:2] == ["webhook.updated", "webhook.updated"]
    assert not any(secret in log.text for secret in secrets)
    # `wa-cloud rotate-key` re-seals it with the other secrets.
    new_key = "another-master-key-for-rotation"
    report = await rotate(db, SecretBox(new_key, (app.settings.secret_key or "",)))
    assert report.resealed["tenant_webhooks.secret_enc"] == 1 and report.ok
    resealed = await db.fetchval("SELECT secret_enc FROM tenant_webhooks")
    context = f"tenant_webhooks.secret:{tenant['id']}"
    assert SecretBox(new_key).open(resealed, context=context) == secrets[1]

    deleted = await app.client.delete("/v1/webhooks", headers=auth(tenant))
    assert deleted.status_code == 204, deleted.text
    assert (await app.client.get("/v1/webhooks", headers=auth(tenant))).status_code == 404
    assert (await app.client.delete("/v1/webhooks", headers=auth(tenant))).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM tenant_webhooks") == 0


async def test_put_webhook_refuses_what_breaks_the_rules(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    good_url, good_events = "https://hooks.example/wa", ["message.received"]
    cases: list[tuple[Any, int, str]] = [
        ({"events": good_events}, 422, "missing_field"),
        ({"url": good_url}, 422, "missing_field"),
        ({"url": "ftp://hooks.example/wa", "events": good_events}, 422, "invalid_field"),
        ({"url": "hooks.example/wa", "events": good_events}, 422, "invalid_field"),
        ({"url": "https://", "events": good_events}, 422, "invalid_field"),
        ({"url": "https://exa mple.com/", "events": good_events}, 422, "invalid_field"),
        ({"url": "https://hooks.example:99999/", "events": good_events}, 422, "invalid_field"),
        ({"url": "http://[::1/", "events": good_events}, 422, "invalid_field"),
        ({"url": good_url + "/" + "a" * 2000, "events": good_events}, 422, "invalid_field"),
        ({"url": 7, "events": good_events}, 422, "invalid_field"),
        ({"url": good_url, "events": []}, 422, "invalid_field"),
        ({"url": good_url, "events": "message.received"}, 422, "invalid_field"),
        ({"url": good_url, "events": ["message.deleted"]}, 422, "invalid_field"),
        ({"url": good_url, "events": [1]}, 422, "invalid_field"),
        ({"url": good_url, "events": good_events, "secret": "mine"}, 422, "unknown_field"),
        (["not", "an", "object"], 422, "validation_error"),
    ]
    for document, status, code in cases:
        response = await app.client.put("/v1/webhooks", json=document, headers=auth(tenant))
        assert response.status_code == status, (document, response.text)
        assert response.json()["error"]["code"] == code, (document, response.text)
    not_json = await app.client.put("/v1/webhooks", content=b"{", headers=auth(tenant))
    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "invalid_json")
    anonymous = await app.client.put("/v1/webhooks", json={"url": good_url, "events": good_events})
    assert anonymous.status_code == 401
    assert await db.fetchval("SELECT count(*) FROM tenant_webhooks") == 0
    long_ok = good_url + "/" + "a" * (2000 - len(good_url) - 1)
    assert len(long_ok) == 2000
    await put_hook(app, tenant, long_ok)

    # A deactivated tenant still reads its webhook but cannot change it.
    off = await app.client.patch(
        f"/v1/admin/tenants/{tenant['id']}", json={"active": False}, headers=app.admin()
    )
    assert off.status_code == 200, off.text
    put = await app.client.put(
        "/v1/webhooks", json={"url": good_url, "events": good_events}, headers=auth(tenant)
    )
    assert (put.status_code, put.json()["error"]["code"]) == (403, "tenant_inactive")
    delete = await app.client.delete("/v1/webhooks", headers=auth(tenant))
    assert delete.status_code == 403
    assert (await app.client.get("/v1/webhooks", headers=auth(tenant))).json()["url"] == long_ok


# --- forwarding ------------------------------------------------------------------------------


async def test_inbound_message_is_forwarded_once_signed(
    app: Running,
    tenant: dict[str, Any],
    db: asyncpg.Connection,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="wa_cloud")
    url = receiver.url + "?token=tenant-own-credential"  # a URL can hold a secret of its own
    secret = await put_hook(app, tenant, url, ["message.received"])
    body = corpus("messages/text.json")
    for _ in range(3):  # Meta redelivers: still one event, one forward, one POST
        assert (await app.post_webhook(body)).status_code == 200
    await wait_idle(db)
    (row,) = await settled(db)
    await asyncio.sleep(0.3)  # room for a duplicate POST to show up, if there were one
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert_signed(request, secret)
    timestamp = request.headers["x-wa-cloud-timestamp"]
    assert verify(secret, timestamp, request.body, request.headers["x-wa-cloud-signature"])
    assert request.headers["x-wa-cloud-delivery"] == str(row["id"])
    assert request.headers["x-wa-cloud-event"] == "message.received"

    document = request.json
    assert set(document) == {"id", "event", "created_at", "data"}
    assert document["id"] == str(row["id"]) and document["event"] == "message.received"
    data = document["data"]
    assert data["phone_number_id"] == NUMBER_A and data["wamid"] == TEXT_WAMID
    assert data["from"] == "16505551234" and data["type"] == "text"
    assert data["text"] == "Hi! Does the blue jacket come in size M?"
    assert data["contact"]["name"] == "Sheena Nelson"
    assert data["timestamp"].startswith("2025-11-21T")
    meta = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]
    assert data["message"] == meta

    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 1, 200)
    log = await app.client.get("/v1/webhooks/deliveries", headers=auth(tenant))
    assert log.status_code == 200, log.text
    (entry,) = log.json()["data"]
    assert entry["id"] == str(row["id"]) and entry["event"] == "message.received"
    assert (entry["state"], entry["attempts"], entry["last_status"]) == ("delivered", 1, 200)
    assert entry["last_error"] is None and entry["delivered_at"] is not None
    assert log.json()["next"] is None

    # Our logs name the delivery, never the secret or the URL.
    ours = [r for r in caplog.records if r.name.startswith("wa_cloud")]
    assert any(getattr(r, "delivery_id", None) == str(row["id"]) for r in ours)
    text = rendered(ours)
    assert secret not in text and "tenant-own-credential" not in text


async def test_down_then_up_is_delivered_with_one_delivery_id(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    # Nothing listens on the socket yet: connections are refused (the endpoint is down).
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    secret = await put_hook(app, tenant, url, ["message.received"])
    assert (await app.post_webhook(corpus("messages/text.json"))).status_code == 200

    async def refused_twice() -> bool:
        return bool(await db.fetchval("SELECT attempts >= 2 FROM forwards"))

    await eventually(refused_twice)
    first = await db.fetchrow("SELECT state, last_status, last_error FROM forwards")
    assert first["state"] == "pending" and first["last_status"] is None
    assert "Connect" in first["last_error"]

    receiver = Receiver(script=[503, 503])  # up, but failing for a while
    async with receiver.serving(sock):
        (row,) = await settled(db)
        assert len(receiver.requests) == 3
    assert (row["state"], row["last_status"], row["last_error"]) == ("delivered", 200, None)
    assert row["attempts"] >= 2 + 3
    ids = {r.headers["x-wa-cloud-delivery"] for r in receiver.requests}
    assert ids == {str(row["id"])}, "the delivery id is the same on every attempt"
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:
        assert_signed(request, secret)
    failures = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'webhook.delivery_failed'"
    )
    assert failures == 0
    metrics = (await app.client.get("/metrics")).text
    assert 'wa_forwards_retried_total{reason="503"} 2' in metrics
    assert 'wa_forwards_delivered_total{event="message.received"} 1' in metrics


async def test_client_error_fails_at_once_with_an_audit_row(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection, receiver: Receiver
) -> None:
    receiver.default = 400
    await put_hook(app, tenant, receiver.url)
    assert (await app.post_webhook(corpus("messages/text.json"))).status_code == 200
    (row,) = await settled(db)
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1, "a 400 is not retried"
    assert (row["state"], row["attempts"], row["last_status"]) == ("failed", 1, 400)
    assert row["last_error"] == "HTTP 400: receiver says no (400)"
    audit = await db.fetchrow(
        "SELECT tenant_id::text AS tenant_id, severity, actor, detail FROM audit_log"
        " WHERE action = 'webhook.delivery_failed'"
    )
    assert audit is not None
    assert (audit["tenant_id"], audit["severity"]) == (tenant["id"], "error")
    assert audit["detail"]["delivery_id"] == str(row["id"])
    assert audit["detail"]["status"] == 400
    events = await app.client.get("/v1/events", headers=auth(tenant))
    assert "webhook.delivery_failed" in {e["action"] for e in events.json()["data"]}
    failed = await app.client.get(
        "/v1/webhooks/deliveries", params={"state": "failed"}, headers=auth(tenant)
    )
    assert [d["id"] for d in failed.json()["data"]] == [str(row["id"])]
    metrics = (await app.client.get("/metrics")).text
    assert 'wa_forwards_failed_total{reason="refused"} 1' in metrics


async def test_retry_after_is_honoured(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection, receiver: Receiver
) -> None:
    receiver.script, receiver.retry_after = [429], "1"
    await put_hook(app, tenant, receiver.url)
    assert (await app.post_webhook(corpus("messages/text.json"))).status_code == 200
    (row,) = await settled(db)
    assert (row["state"], row["attempts"]) == ("delivered", 2)
    first, second = receiver.requests
    assert second.at - first.at >= 0.9


async def test_gives_up_after_max_attempts(
    settings: Settings, db: asyncpg.Connection, receiver: Receiver
) -> None:
    receiver.default = 503
    async with serve(replace(settings, forward_max_attempts=3), run_worker=True) as app:
        tenant = await app.create_tenant("Flaky endpoint")
        assert (await app.add_number(tenant["api_key"], NUMBER_A)).status_code == 201
        await put_hook(app, tenant, receiver.url)
        assert (await app.post_webhook(corpus("messages/text.json"))).status_code == 200
        (row,) = await settled(db)
    assert len(receiver.requests) == 3
    assert (row["state"], row["attempts"], row["last_status"]) == ("failed", 3, 503)
    assert row["last_error"].startswith("gave up after 3 attempts: HTTP 503")
    audit = await db.fetchrow(
        "SELECT severity, detail FROM audit_log WHERE action = 'webhook.delivery_failed'"
    )
    assert audit["severity"] == "error" and audit["detail"]["attempts"] == 3


async def test_only_subscribed_events_are_forwarded(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection, receiver: Receiver
) -> None:
    await put_hook(app, tenant, receiver.url, ["message.status"])
    for name in ("messages/text.json", "fields/message_template_status_update.json"):
        assert (await app.post_webhook(corpus(name))).status_code == 200
    await wait_idle(db)
    assert await db.fetchval("SELECT count(*) FROM forwards") == 0

    assert (await app.post_webhook(corpus("statuses/sent_with_pricing.json"))).status_code == 200
    await wait_idle(db)
    (row,) = await settled(db)
    assert row["event"] == "message.status" and row["state"] == "delivered"
    data = receiver.requests[0].json["data"]
    assert data["phone_number_id"] == NUMBER_A
    assert data["wamid"].startswith("wamid.OUT13.")
    assert (data["status"], data["recipient"]) == ("sent", "5511987654321")
    assert data["pricing"]["category"] == "utility" and data["errors"] == []


async def test_tenants_without_a_webhook_get_no_rows(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection, receiver: Receiver
) -> None:
    # Another tenant's webhook, taking everything, sees nothing of this tenant's traffic.
    other = await app.create_tenant("Listener without numbers")
    await put_hook(app, other, receiver.url, [*ALL_EVENTS, "bot.reply"])
    for name in (
        "messages/text.json",
        "statuses/sent_with_pricing.json",
        "fields/message_template_status_update.json",
        "fields/phone_number_quality_update.json",
    ):
        assert (await app.post_webhook(corpus(name))).status_code == 200
    await wait_idle(db)
    patched = await app.client.patch(
        f"/v1/numbers/{NUMBER_A}", json={"bot_enabled": False}, headers=auth(tenant)
    )
    assert patched.status_code == 200, patched.text
    assert await db.fetchval("SELECT count(*) FROM messages") == 1
    assert await db.fetchval("SELECT count(*) FROM forwards") == 0
    await asyncio.sleep(0.2)
    assert receiver.requests == []


async def test_template_and_number_events(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection, receiver: Receiver
) -> None:
    await put_hook(app, tenant, receiver.url, ["template.updated", "number.updated"])
    for name in (
        "fields/message_template_status_update.json",
        "fields/phone_number_quality_update.json",
        "fields/message_template_status_update.json",  # redelivered: one event
    ):
        assert (await app.post_webhook(corpus(name))).status_code == 200
        await wait_idle(db)
    patched = await app.client.patch(
        f"/v1/numbers/{NUMBER_A}", json={"bot_enabled": False}, headers=auth(tenant)
    )
    assert patched.status_code == 200, patched.text
    rows = await settled(db, 3)
    assert {r["state"] for r in rows} == {"delivered"}
    by_kind = {
        (r.json["event"], r.json["data"].get("field") or r.json["data"]["source"]): r.json["data"]
        for r in receiver.requests
    }
    assert len(receiver.requests) == 3
    template = by_kind[("template.updated", "message_template_status_update")]
    assert template["waba_id"] == WABA and template["source"] == "meta"
    assert template["value"]["message_template_name"] == "order_shipped_v2"
    quality = by_kind[("number.updated", "phone_number_quality_update")]
    assert quality["value"]["current_limit"] == "TIER_10K"
    api = by_kind[("number.updated", "api")]
    assert api["phone_number_id"] == NUMBER_A and api["changes"] == {"bot_enabled": False}
    assert api["number"]["bot_enabled"] is False


async def test_enqueue_dedup_and_delivery_log_pages(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection, receiver: Receiver
) -> None:
    await put_hook(app, tenant, receiver.url, ["bot.reply"])
    tenant_id = UUID(tenant["id"])
    async with db.transaction():
        for n in range(3):
            await enqueue_forward(db, tenant_id, "bot.reply", {"n": n}, f"reply-{n}")
        await enqueue_forward(db, tenant_id, "bot.reply", {"n": 0}, "reply-0")  # a repeat
        await enqueue_forward(db, tenant_id, "message.status", {"x": 1}, "not subscribed")
    with pytest.raises(ValueError, match="unknown forwarded event"):
        await enqueue_forward(db, tenant_id, "bot.replied", {}, "x")
    rows = await settled(db, 3)
    assert sorted(r["payload"]["n"] for r in rows) == [0, 1, 2]
    assert sorted(r.json["data"]["n"] for r in receiver.requests) == [0, 1, 2]

    first = await app.client.get(
        "/v1/webhooks/deliveries", params={"limit": 2}, headers=auth(tenant)
    )
    assert first.status_code == 200, first.text
    assert len(first.json()["data"]) == 2 and first.json()["next"]
    rest = await app.client.get(
        "/v1/webhooks/deliveries",
        params={"limit": 2, "cursor": first.json()["next"]},
        headers=auth(tenant),
    )
    assert rest.status_code == 200, rest.text
    assert len(rest.json()["data"]) == 1 and rest.json()["next"] is None
    listed = [d["id"] for d in first.json()["data"] + rest.json()["data"]]
    newest_first = await db.fetch("SELECT id::text FROM forwards ORDER BY created_at DESC, id DESC")
    assert listed == [r["id"] for r in newest_first]
    assert set(first.json()["data"][0]) == {
        "id",
        "event",
        "state",
        "attempts",
        "last_status",
        "last_error",
        "created_at",
        "delivered_at",
    }
    for params in ({"state": "gone"}, {"cursor": "nonsense"}, {"limit": "0"}):
        bad = await app.client.get("/v1/webhooks/deliveries", params=params, headers=auth(tenant))
        assert bad.status_code == 400, (params, bad.text)


async def test_delete_drops_what_was_waiting(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    sock = bound_socket()  # never listening: every attempt is refused
    await put_hook(app, tenant, f"http://127.0.0.1:{sock.getsockname()[1]}/hook", ["bot.reply"])
    await enqueue_forward(db, UUID(tenant["id"]), "bot.reply", {"n": 1}, "one")
    await eventually(lambda: db.fetchval("SELECT attempts >= 1 FROM forwards"))
    assert (await app.client.delete("/v1/webhooks", headers=auth(tenant))).status_code == 204
    (row,) = await settled(db)
    assert row["state"] == "failed"
    assert row["last_error"] in ("the webhook was deleted", "the tenant has no webhook")
    sock.close()


# --- fairness and deactivated tenants -------------------------------------------------------


@contextlib.asynccontextmanager
async def hanging_endpoint() -> AsyncIterator[tuple[str, list[float], asyncio.Event]]:
    """An endpoint that takes every POST and answers none until released: (url, arrivals,
    release). Released on the way out, so the server can stop."""
    arrivals: list[float] = []
    release = asyncio.Event()

    async def hook(request: Request) -> Response:
        await request.body()
        arrivals.append(time.monotonic())
        await release.wait()
        return Response("late")

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with serve_asgi(app) as base:
        try:
            yield base + "/hook", arrivals, release
        finally:
            release.set()


async def test_a_hanging_endpoint_delays_only_its_own_tenant(
    app: Running, db: asyncpg.Connection
) -> None:
    """Tenant A's endpoint hangs and A has more events queued than the forwarder has slots;
    B's events, queued after A's, still go out at once: A holds at most its own share."""
    slow, fast = await app.create_tenant("Slow Co"), await app.create_tenant("Fast Co")
    quick = Receiver()
    async with hanging_endpoint() as (slow_url, arrivals, release), quick.serving():
        await put_hook(app, slow, slow_url, ["bot.reply"])
        await put_hook(app, fast, quick.url, ["bot.reply"])
        for n in range(MAX_IN_FLIGHT + 8):
            await enqueue_forward(db, UUID(slow["id"]), "bot.reply", {"n": n}, f"a{n}")
        await until(lambda: len(arrivals) > 0, timeout=5)
        started = time.monotonic()
        for n in range(3):
            await enqueue_forward(db, UUID(fast["id"]), "bot.reply", {"n": n}, f"b{n}")

        async def fast_delivered() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) = 3 FROM forwards"
                    " WHERE tenant_id = $1 AND state = 'delivered'",
                    UUID(fast["id"]),
                )
            )

        # Before the bound, A's hanging POSTs took every slot for their 10 s timeout.
        await eventually(fast_delivered, timeout=3)
        assert time.monotonic() - started < 3
        assert len(quick.requests) == 3
        assert len(arrivals) == MAX_IN_FLIGHT_PER_TENANT  # A's share, no more
        release.set()  # A's endpoint answers now: its events go out too, late, not lost
        await eventually(
            lambda: db.fetchval("SELECT count(*) = 0 FROM forwards WHERE state = 'pending'"),
            timeout=15,
        )
    assert await db.fetchval("SELECT count(*) FROM forwards WHERE state = 'delivered'") == (
        MAX_IN_FLIGHT + 8 + 3
    )


async def test_a_deactivated_tenant_gets_nothing_forwarded_until_reactivated(
    app: Running, db: asyncpg.Connection
) -> None:
    """Its events stay queued, untouched (no attempt spent, nothing posted) while it is
    inactive, and go out once it is active again; an active tenant's are not held up."""
    off, on = await app.create_tenant("Off Co"), await app.create_tenant("On Co")
    off_receiver, on_receiver = Receiver(), Receiver()
    async with off_receiver.serving(), on_receiver.serving():
        await put_hook(app, off, off_receiver.url, ["bot.reply"])
        await put_hook(app, on, on_receiver.url, ["bot.reply"])
        patch = await app.client.patch(
            f"/v1/admin/tenants/{off['id']}", json={"active": False}, headers=app.admin()
        )
        assert patch.status_code == 200, patch.text
        await enqueue_forward(db, UUID(off["id"]), "bot.reply", {"n": 1}, "off")
        await enqueue_forward(db, UUID(on["id"]), "bot.reply", {"n": 1}, "on")
        await until(lambda: len(on_receiver.requests) == 1)
        await asyncio.sleep(0.5)  # several polls: room for a wrong claim to show up
        held = await db.fetchrow("SELECT * FROM forwards WHERE tenant_id = $1", UUID(off["id"]))
        assert (held["state"], held["attempts"], held["last_error"]) == ("pending", 0, None)
        assert off_receiver.requests == []

        patch = await app.client.patch(
            f"/v1/admin/tenants/{off['id']}", json={"active": True}, headers=app.admin()
        )
        assert patch.status_code == 200, patch.text
        await settled(db, 2)
        await until(lambda: len(off_receiver.requests) == 1)
    sent = await db.fetchrow("SELECT * FROM forwards WHERE tenant_id = $1", UUID(off["id"]))
    assert (sent["state"], sent["attempts"]) == ("delivered", 1)


# --- pure parts ------------------------------------------------------------------------------


def test_signature_is_hmac_over_timestamp_and_body() -> None:
    body = b'{"id":"x"}'
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("whsec_k", "1700000000", body) == "sha256=" + expected
    assert verify("whsec_k", "1700000000", body, "sha256=" + expected)
    assert not verify("whsec_k", "1700000001", body, "sha256=" + expected)
    assert not verify("other", "1700000000", body, "sha256=" + expected)


@pytest.mark.parametrize(
    ("status", "delivered", "retryable"),
    [
        (200, True, False),
        (204, True, False),
        (301, False, False),
        (400, False, False),
        (401, False, False),
        (404, False, False),
        (408, False, True),
        (410, False, False),
        (429, False, True),
        (500, False, True),
        (503, False, True),
        (None, False, True),
    ],
)
def test_which_answers_are_retried(status: int | None, delivered: bool, retryable: bool) -> None:
    answer = Answer(status)
    assert (answer.delivered, answer.retryable) == (delivered, retryable)


def test_settings_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert (defaults.forward_retry_base_seconds, defaults.forward_max_attempts) == (5.0, 15)
    tuned = Settings.from_env(
        {"WA_FORWARD_RETRY_BASE_SECONDS": "0.5", "WA_FORWARD_MAX_ATTEMPTS": "4"}
    )
    assert (tuned.forward_retry_base_seconds, tuned.forward_max_attempts) == (0.5, 4)


def test_retry_after_values() -> None:
    assert retry_after(None) is None
    assert retry_after("") is None
    assert retry_after("7") == 7.0
    assert retry_after("-3") == 0.0
    assert retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    assert 100 < (retry_after(future) or 0) <= 120
    # Garbage from a server we do not control never raises (the Graph client's parser did).
    for garbage in ("Wed, 21 Oct 99999 07:28:00 GMT", "nan", "Mon, 99 Foo", "\x00", "1e999"):
        value = retry_after(garbage)
        assert value is None or 0 <= value <= 86_400
