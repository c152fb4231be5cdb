"""Exactly once, even when things go wrong: a send whose lease ran out, a number whose token
does not open, a worker loop that dies, late and reordered webhooks, characters PostgreSQL
cannot store, and the headers and bodies that used to crash a handler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import NUMBER_A, WABA, Meta, Running, meta_running, serve_asgi, wait_idle
from tests.test_outbox import TEMPLATE, _seed_template
from wa_cloud.config import Settings
from wa_cloud.db.groupcommit import GroupCommit
from wa_cloud.db.pool import create_pool
from wa_cloud.graph.client import GraphClient, new_http_client, new_send_session
from wa_cloud.graph.errors import GraphError
from wa_cloud.metrics import Metrics
from wa_cloud.outbox.sender import Batch, Sender
from wa_cloud.resources import open_resources
from wa_cloud.secretbox import SecretBox
from wa_cloud.worker import Health, InFlight, LoopState, Worker

CUSTOMER = "16505551234"


@contextlib.asynccontextmanager
async def sender_of(settings: Settings, meta: Meta) -> AsyncIterator[Sender]:
    """A sender as a worker runs it (own pool and clients), its writers open."""
    assert settings.database_url and settings.secret_key
    pool = await create_pool(settings.database_url, max_size=4)
    try:
        async with (
            new_http_client(5.0) as http,
            new_send_session(5.0) as sends,
        ):
            graph = GraphClient(
                http, sends, str(meta.sandbox.base_url).rstrip("/"), settings.graph_version
            )
            box = SecretBox(settings.secret_key, settings.previous_secret_keys)
            sender = Sender(pool, graph, box, Metrics(), lease_seconds=5.0)
            async with sender.writing():
                yield sender
    finally:
        await pool.close()


async def _accepted_sends(meta: Meta) -> list[dict[str, Any]]:
    seen = await meta.sandbox.get("/_sandbox/requests", params={"path_contains": "/messages"})
    return [r for r in seen.json()["data"] if r["method"] == "POST" and r["status"] == 200]


async def test_a_send_whose_lease_ran_out_while_waiting_is_not_sent_twice(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, run_worker=False) as meta:
        await _seed_template(meta)
        queued = await meta.send(to=CUSTOMER, type="template", template=TEMPLATE)
        assert queued.status_code == 202, queued.text
        async with sender_of(settings, meta) as first, sender_of(settings, meta) as second:
            slow = await first.claim()
            assert isinstance(slow, Batch) and len(slow.items) == 1
            # The first worker stalls past its lease before the send slot comes (a long GC,
            # a saturated loop): the second recovers the row as never dispatched and sends it.
            await db.execute("UPDATE messages SET locked_until = now() - interval '1 second'")
            await second.recover()
            fast = await second.claim()
            assert isinstance(fast, Batch) and [i.id for i in fast.items] == [
                i.id for i in slow.items
            ]
            await second.dispatch(fast)
            # The first one wakes up and carries on with its batch: its mark finds no lease.
            await first.dispatch(slow)
        assert len(await _accepted_sends(meta)) == 1
        row = await db.fetchrow("SELECT status, wamid, attempts FROM messages")
        assert row["status"] == "accepted" and row["wamid"]


async def _send_with_an_unreadable_token(meta: Meta, db: asyncpg.Connection) -> dict[str, Any]:
    """Number A's sealed token becomes unreadable (sealed under a key this process lacks), then
    a send from it: the sender fails it. Returns the failed message."""
    other_box = SecretBox("some-other-master-key-of-enough-length", ())
    await db.execute(
        "UPDATE numbers SET access_token_enc = $2 WHERE phone_number_id = $1",
        NUMBER_A,
        other_box.seal("EAAG-x", context=f"numbers.access_token:{NUMBER_A}"),
    )
    await meta.customer_writes()
    broken = await meta.send(to=CUSTOMER, type="text", text={"body": "stuck?"})
    assert broken.status_code == 202, broken.text
    async with asyncio.timeout(15):
        while (await meta.message(broken.json()["id"]))["status"] != "failed":
            await asyncio.sleep(0.05)
    return await meta.message(broken.json()["id"])


async def test_a_number_whose_token_does_not_open_stops_only_itself(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings) as meta:
        await _seed_template(meta)
        second = "106540352242923"
        added = await meta.app.add_number(meta.api_key, second)
        assert added.status_code == 201, added.text
        failed = await _send_with_an_unreadable_token(meta, db)
        assert "cannot be opened" in failed["errors"][0]["message"]
        flagged = await db.fetchval(
            "SELECT flagged_reason FROM numbers WHERE phone_number_id = $1", NUMBER_A
        )
        assert flagged and "cannot be opened" in flagged

        # The other number keeps sending; the flagged one is refused clearly, not with a 500.
        fine = await meta.app.client.post(
            "/v1/messages",
            json={"from": second, "to": CUSTOMER, "type": "template", "template": TEMPLATE},
            headers=meta.tenant(),
        )
        assert fine.status_code == 202, fine.text
        await meta.wait_status(fine.json()["id"], "accepted", "sent", "delivered", "read")
        for request in (
            {"type": "text", "text": {"body": "again"}},
            {"type": "template", "template": {**TEMPLATE, "name": "never_fetched"}},
        ):
            again = await meta.send(to=CUSTOMER, **request)
            assert again.status_code == 409, again.text
            assert again.json()["error"]["code"] == "number_unavailable"
        ready = await meta.app.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["loops"]["sender"]["restarts"] == 0, (
            ready.text
        )


async def test_a_worker_loop_that_dies_is_restarted_and_reported(settings: Settings) -> None:
    assert settings.database_url and settings.secret_key
    pool = await create_pool(settings.database_url, max_size=4)
    deaths = 0
    recovered = asyncio.Event()

    async def flaky() -> None:
        nonlocal deaths
        if deaths < 2:
            deaths += 1
            raise RuntimeError("a bug in one consumer")
        recovered.set()
        await asyncio.Event().wait()  # runs until the worker stops

    try:
        async with open_resources(
            replace(settings, graph_base_url="http://127.0.0.1:9"), pool_size=4
        ) as resources:
            metrics = resources.metrics
            worker = Worker(resources)
            async with worker:
                task = worker.supervise("flaky", flaky)
                async with asyncio.timeout(10):
                    while worker.health.loops["flaky"].restarts < 1:
                        await asyncio.sleep(0.01)
                state = worker.health.loops["flaky"]
                assert "a bug in one consumer" in (state.last_error or "")
                async with asyncio.timeout(15):
                    await recovered.wait()
                assert worker.health.ready and worker.health.loops["flaky"].restarts == 2
                assert 'wa_worker_restarts_total{loop="flaky"} 2' in metrics.render()
            assert task.done()
    finally:
        await pool.close()


def test_readiness_reports_a_loop_that_is_down() -> None:
    from wa_cloud.api.ops import worker_readiness

    health = Health({"sender": LoopState(running=False, restarts=3, last_error="KeyError: 'x'")})
    answer = worker_readiness(health, {"status": "ready"})
    assert answer.status_code == 503
    body = json.loads(bytes(answer.body))
    assert body["error"]["code"] == "worker_degraded"
    assert body["error"]["loops"]["sender"] == {
        "running": False,
        "restarts": 3,
        "last_error": "KeyError: 'x'",
    }


def _delivery(value: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": WABA, "changes": [{"value": value, "field": "messages"}]}],
        }
    ).encode()


_METADATA = {"display_phone_number": "15550783881", "phone_number_id": NUMBER_A}


async def test_a_late_131047_does_not_close_a_window_a_newer_message_opened(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    now = int(time.time())
    inbound = _delivery(
        {
            "messaging_product": "whatsapp",
            "metadata": _METADATA,
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": CUSTOMER}],
            "messages": [
                {
                    "from": CUSTOMER,
                    "id": "wamid.new-inbound",
                    "timestamp": str(now - 10),
                    "type": "text",
                    "text": {"body": "I am back"},
                }
            ],
        }
    )
    late_failure = _delivery(
        {
            "messaging_product": "whatsapp",
            "metadata": _METADATA,
            "statuses": [
                {
                    "id": "wamid.old-send",
                    "status": "failed",
                    "timestamp": str(now - 3600),  # about a send an hour ago
                    "recipient_id": CUSTOMER,
                    "errors": [{"code": 131047, "title": "Re-engagement message"}],
                }
            ],
        }
    )
    assert (await app.post_webhook(inbound)).status_code == 200
    await wait_idle(db)
    assert (await app.post_webhook(late_failure)).status_code == 200
    await wait_idle(db)
    listed = await app.client.get(
        "/v1/contacts",
        params={"phone_number_id": NUMBER_A},
        headers={"authorization": f"Bearer {tenant['api_key']}"},
    )
    (contact,) = listed.json()["data"]
    assert contact["window_open"] is True
    # A 131047 newer than the customer's last message still closes it.
    newer = late_failure.replace(str(now - 3600).encode(), str(now - 1).encode())
    newer = newer.replace(b'"failed"', b'"failed", "x": 1', 1)  # another body, same status
    assert (await app.post_webhook(newer.replace(b"wamid.old-send", b"wamid.s2"))).status_code
    await wait_idle(db)
    listed = await app.client.get(
        "/v1/contacts",
        params={"phone_number_id": NUMBER_A},
        headers={"authorization": f"Bearer {tenant['api_key']}"},
    )
    assert listed.json()["data"][0]["window_open"] is False


async def test_text_postgresql_cannot_hold_is_stored_replaced_not_lost(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    raw = (
        b'{"object": "whatsapp_business_account", "entry": [{"id": "'
        + WABA.encode()
        + b'", "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", '
        b'"metadata": {"display_phone_number": "15550783881", "phone_number_id": "'
        + NUMBER_A.encode()
        + b'"}, "contacts": [{"profile": {"name": "Nul\\u0000Name"}, "wa_id": "16505551234"}], '
        b'"messages": [{"from": "16505551234", "id": "wamid.odd", "timestamp": "1763700000", '
        b'"type": "text", "text": {"body": "a\\u0000b \\ud800 c \\ud83d\\ude00"}}]}}]}]}'
    )
    assert (await app.post_webhook(raw)).status_code == 200
    await wait_idle(db)
    assert await db.fetchval("SELECT state FROM deliveries") == "processed"
    assert await db.fetchval("SELECT text FROM messages WHERE wamid = 'wamid.odd'") == (
        "a\ufffdb \ufffd c \U0001f600"
    )
    assert await db.fetchval("SELECT name FROM contacts") == "Nul\ufffdName"
    assert bytes(await db.fetchval("SELECT body FROM deliveries")) == raw  # untouched


async def test_deep_or_unstorable_json_is_a_clear_error_on_the_api(
    app: Running, tenant: dict[str, Any]
) -> None:
    headers = {
        "authorization": f"Bearer {tenant['api_key']}",
        "content-type": "application/json",
    }
    deep = b'{"from": "1", "context": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}"
    response = await app.client.post("/v1/messages", content=deep, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    deeper = b"[" * 100_000 + b"]" * 100_000
    response = await app.client.post("/v1/messages", content=deeper, headers=headers)
    assert response.status_code == 400, response.text
    surrogate = b'{"from": "' + NUMBER_A.encode() + b'", "to": "1", "type": "text", '
    surrogate += b'"text": {"body": "\\udc00"}}'
    response = await app.client.post("/v1/messages", content=surrogate, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_field"


def test_depth_read_from_the_text_agrees_with_the_walk() -> None:
    from wa_cloud.jsonsafe import MAX_DEPTH, text_depth_within

    def nested(depth: int) -> bytes:
        return b'{"a": ' * depth + b"1" + b"}" * depth

    for depth, within in ((MAX_DEPTH, True), (MAX_DEPTH + 1, False)):
        raw = nested(depth)
        assert text_depth_within(raw, json.loads(raw)) is within
    # Many brackets, shallow: counting alone cannot tell, the walk does.
    wide = json.dumps([{"a": [1]} for _ in range(100)]).encode()
    assert text_depth_within(wide, json.loads(wide)) is True
    # Brackets inside strings only ever make the count larger, never the answer wrong.
    quoted = json.dumps({"t": "{[" * 100, "d": json.loads(nested(MAX_DEPTH + 1))}).encode()
    assert text_depth_within(quoted, json.loads(quoted)) is False


async def test_a_non_ascii_signature_header_is_403_not_500(web: Running) -> None:
    response = await web.client.post(
        "/webhook",
        content=b"{}",
        headers={"x-hub-signature-256": "sha256=\u00e9\u00e9".encode()},
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "signature_invalid"


async def test_large_non_ascii_bodies_are_verified_in_escaped_form(
    web: Running, db: asyncpg.Connection
) -> None:
    # Above the inline size, the escaped-unicode check runs in a thread: same answer.
    from wa_cloud.inbound.signature import escaped_unicode, sign

    text = "Grüße, 日本語 😀 " * 20_000
    body = json.dumps({"object": "whatsapp_business_account", "t": text}, ensure_ascii=False)
    raw = body.encode()
    assert len(raw) > 64 * 1024
    header = sign(escaped_unicode(raw), web.settings.app_secret or "")
    ok = await web.client.post("/webhook", content=raw, headers={"x-hub-signature-256": header})
    assert ok.status_code == 200, ok.text
    wrong = await web.client.post(
        "/webhook", content=raw, headers={"x-hub-signature-256": "sha256=" + "0" * 64}
    )
    assert wrong.status_code == 403
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 1


async def test_graph_client_survives_a_garbage_retry_after() -> None:
    async def throttled(request: Request) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": "slow down", "type": "OAuthException", "code": 4}},
            status_code=429,
            headers={"retry-after": "Wed, 21 Oct 99999 07:28:00 GMT"},
        )

    meta_like = Starlette(routes=[Route("/v23.0/{path:path}", throttled, methods=["GET"])])
    async with (
        serve_asgi(meta_like) as url,
        httpx.AsyncClient() as http,
        new_send_session(5.0) as sends,
    ):
        graph = GraphClient(http, sends, url, "v23.0")
        try:
            await graph.request("GET", "123", "token")
        except GraphError as exc:  # the error table's, not a ValueError from the date parser
            assert exc.retry_after is None
        else:
            raise AssertionError("a 429 must raise")


async def test_a_group_commit_is_bounded_by_bytes() -> None:
    groups: list[int] = []

    async def write(items: list[bytes]) -> None:
        groups.append(len(items))
        await asyncio.sleep(0.01)

    async with GroupCommit("bytes", write, max_bytes=4_000_000, size=len) as commit:
        await asyncio.gather(*(commit.submit(b"x" * 3_000_000) for _ in range(5)))
        await asyncio.gather(*(commit.submit(b"x" * 1000) for _ in range(50)))
    assert max(groups[:5]) == 1  # never two 3 MB bodies in one statement
    assert sum(groups) == 55 and max(groups) > 1  # small ones still group


async def test_a_flagged_number_recovers_once_its_token_opens_again(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """A flag is not forever: once the token opens again (the key is back, or the number is
    registered again), the next send clears it."""
    async with meta_running(settings) as meta:
        await _seed_template(meta)
        good = await db.fetchval(
            "SELECT access_token_enc FROM numbers WHERE phone_number_id = $1", NUMBER_A
        )
        await _send_with_an_unreadable_token(meta, db)

        # The fault is fixed (the right key is back) and the rest period is long over.
        await db.execute(
            "UPDATE numbers SET access_token_enc = $2, flagged_at = now() - interval '1 hour'"
            " WHERE phone_number_id = $1",
            NUMBER_A,
            good,
        )
        box = SecretBox(settings.secret_key or "", settings.previous_secret_keys)
        assert box.open(good, context=f"numbers.access_token:{NUMBER_A}")
        again = await meta.send(to=CUSTOMER, type="text", text={"body": "fixed?"})
        assert again.status_code == 202, f"still refused after the fix: {again.text}"


def test_the_escaped_unicode_fallback_has_a_budget() -> None:
    from wa_cloud.ratelimit import KeyRateLimiter

    budget = KeyRateLimiter(rate_per_second=1000, burst=3000)  # bytes
    assert budget.take(b"", cost=2000) is None and budget.take(b"", cost=1000) is None
    assert budget.take(b"", cost=500) is not None  # spent: refused without the work
    time.sleep(0.6)
    assert budget.take(b"", cost=500) is None


async def test_bad_signatures_on_big_non_ascii_bodies_cost_a_bounded_budget(
    web: Running, db: asyncpg.Connection
) -> None:
    # Anyone can send these (no secret needed); past the budget they are refused unexamined,
    # and a genuine body signed over the escaped form still passes once the budget refills.
    from wa_cloud.inbound.signature import escaped_unicode, sign

    raw = ("éa" * 700_000).encode()  # 2.1 MB of alternating scripts: the costliest text
    for _ in range(5):
        refused = await web.client.post(
            "/webhook", content=raw, headers={"x-hub-signature-256": "sha256=" + "0" * 64}
        )
        assert refused.status_code == 403
    small = json.dumps({"object": "whatsapp_business_account", "t": "é" * 10}, ensure_ascii=False)
    body = small.encode()
    header = sign(escaped_unicode(body), web.settings.app_secret or "")
    async with asyncio.timeout(10):
        while True:
            answer = await web.client.post(
                "/webhook", content=body, headers={"x-hub-signature-256": header}
            )
            if answer.status_code == 200:
                break
            await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 1


async def test_a_stream_of_large_webhook_bodies_is_refused_unread_past_the_budget(
    web: Running,
) -> None:
    big = b'{"object": "whatsapp_business_account", "pad": "' + b"x" * 2_900_000 + b'"}'
    codes = []
    for _ in range(15):  # 43 MB, past the 32 MB burst
        answer = await web.client.post(
            "/webhook", content=big, headers={"x-hub-signature-256": "sha256=" + "0" * 64}
        )
        codes.append((answer.status_code, answer.json()["error"]["code"]))
        # Refused unread, the connection closes (the rest of the body is never read); read and
        # refused for its signature, it stays open.
        closes = answer.headers.get("connection") == "close"
        assert closes == (answer.status_code == 503), answer.headers
    assert codes[0] == (403, "signature_invalid")
    assert (503, "busy") in codes  # Meta retries a 503; a flood is not read
    small = await web.client.post(
        "/webhook", content=b"{}", headers={"x-hub-signature-256": "sha256=" + "0" * 64}
    )
    assert small.status_code == 403  # small bodies are not held back by it


async def test_a_group_commit_reopened_after_a_close_commits_again() -> None:
    """A supervised consumer that died re-enters its committers (the sender's dispatch marks
    and outcomes): they must write again, not answer "shutting down" for ever."""
    written: list[int] = []

    async def write(items: list[int]) -> None:
        written.extend(items)

    commit: GroupCommit[int] = GroupCommit("reopened", write)
    async with commit:
        await commit.submit(1)
    async with commit:
        await commit.submit(2)
    assert written == [1, 2]


async def test_a_drain_cut_short_cancels_its_jobs() -> None:
    """A worker's stop that runs past its deadline cancels the consumer's drain: the jobs still
    running must be cancelled with it, not left writing through closed resources."""
    jobs = InFlight(None, limit=4)
    cancelled = asyncio.Event()

    async def job() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    jobs.start(job())
    drain = asyncio.create_task(jobs.drain(60.0))
    await asyncio.sleep(0.05)
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain
    assert cancelled.is_set() and len(jobs) == 0
