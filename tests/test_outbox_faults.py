"""Meta's errors and a dying worker, end to end through the sandbox."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import replace

import asyncpg
import pytest

from tests.conftest import NUMBER_A, Meta, meta_running, start_worker
from wa_cloud.config import Settings
from wa_cloud.sandbox.corpus import text_message

CUSTOMER = "16505551234"


async def _fault(meta: Meta, **fault: object) -> None:
    response = await meta.sandbox.post("/_sandbox/faults", json=fault)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("code", "title_code"),
    [(131026, 131026), (131051, 131051), (190, 190), (131048, 131048), (100, 100)],
)
async def test_permanent_error_fails_with_metas_code(
    meta: Meta, code: int, title_code: int
) -> None:
    await meta.customer_writes()
    await _fault(meta, code=code, times=1)
    response = await meta.send(to=CUSTOMER, type="text", text={"body": "x"})
    message = await _terminal(meta, response.json()["id"])
    assert message["status"] == "failed"
    assert message["errors"][0]["code"] == title_code
    assert message["errors"][0]["message"]
    assert message["attempts"] == 1  # not retried


async def _terminal(meta: Meta, message_id: str) -> dict[str, object]:
    async with asyncio.timeout(20):
        while True:
            message = await meta.message(message_id)
            if message["status"] in ("failed", "read", "unknown"):
                return message
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("code", [131000, 130429, 1])
async def test_transient_error_is_retried_then_sent(meta: Meta, code: int) -> None:
    await meta.customer_writes()
    await _fault(meta, code=code, times=1)
    response = await meta.send(to=CUSTOMER, type="text", text={"body": "retry me"})
    message = await _terminal(meta, response.json()["id"])
    assert message["status"] == "read"
    assert message["attempts"] == 2
    bodies = [b for b in await meta.sent_bodies() if b["text"]["body"] == "retry me"]
    assert len(bodies) == 2  # the refused attempt and the accepted one


async def test_timeout_after_sending_is_unknown_not_resent(settings: Settings) -> None:
    async with meta_running(replace(settings, graph_timeout_seconds=0.5)) as meta:
        await meta.customer_writes()
        await _fault(meta, delay_seconds=2, times=1)
        response = await meta.send(to=CUSTOMER, type="text", text={"body": "did it go?"})
        message = await _terminal(meta, response.json()["id"])
        assert message["status"] == "unknown"
        assert message["errors"][0]["message"]
        await asyncio.sleep(2.5)  # the sandbox did accept it: it must not be sent again
        assert len(await meta.sent_bodies()) == 1
        assert (await meta.message(response.json()["id"]))["status"] == "unknown"


async def test_worker_killed_between_send_and_record_reports_unknown(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, run_worker=False) as meta:
        await meta.sandbox.post(
            "/_sandbox/windows", json={"phone_number_id": NUMBER_A, "user": CUSTOMER}
        )
        await meta.app.post_webhook(text_message(NUMBER_A, CUSTOMER, "hi"))
        # No in-process worker: index the inbound message with a worker of its own.
        worker = start_worker(meta.app.settings, WA_GRAPH_TIMEOUT_SECONDS="30")
        try:
            async with asyncio.timeout(20):
                while not await db.fetchval("SELECT count(*) FROM contacts"):
                    await asyncio.sleep(0.05)
            await _fault(meta, delay_seconds=5, times=1)  # Meta accepts, then answers late
            response = await meta.send(to=CUSTOMER, type="text", text={"body": "in flight"})
            async with asyncio.timeout(20):
                while not await db.fetchval(
                    "SELECT count(*) FROM messages WHERE dispatched_at IS NOT NULL"
                ):
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)  # the request is out; the sandbox holds its answer
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()
        row = await db.fetchrow(
            "SELECT status, dispatched_at FROM messages WHERE direction = 'out'"
        )
        assert row["status"] == "sending" and row["dispatched_at"] is not None
        second = start_worker(meta.app.settings, WA_GRAPH_TIMEOUT_SECONDS="30")
        try:
            message = await _terminal(meta, response.json()["id"])
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(15)
        assert message["status"] == "unknown"
        await asyncio.sleep(5)  # the sandbox logs the held request once it answers
        assert [b["text"]["body"] for b in await meta.sent_bodies()] == ["in flight"]


async def test_worker_killed_mid_backlog_loses_and_doubles_nothing(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, run_worker=False) as meta:
        await db.execute("UPDATE numbers SET throughput_mps = 40")
        await meta.sandbox.post(
            "/_sandbox/numbers",
            json={
                "phone_number_id": NUMBER_A,
                "waba_id": "102290129340398",
                "access_token": "EAAG-test-token-" + NUMBER_A,
                "throughput_mps": 40,
            },
        )
        customers = [f"4477009{i:05d}" for i in range(120)]
        for customer in customers:
            await meta.sandbox.post(
                "/_sandbox/windows", json={"phone_number_id": NUMBER_A, "user": customer}
            )
        template = {"name": "hello_world", "language": {"code": "en_US"}}
        await meta.sandbox.post(
            "/_sandbox/templates",
            json={
                "waba_id": "102290129340398",
                "name": "hello_world",
                "language": "en_US",
                "body": "Hello",
            },
        )
        ids = []
        for i, customer in enumerate(customers):
            response = await meta.send(
                to=customer,
                type="template",
                template=template,
                idempotency_key=f"k{i}",
                biz_opaque_callback_data=f"m{i}",
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        first = start_worker(meta.app.settings, WA_GRAPH_TIMEOUT_SECONDS="30")
        try:
            async with asyncio.timeout(30):
                while len(await meta.sent_bodies()) < 30:
                    await asyncio.sleep(0.01)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        second = start_worker(meta.app.settings, WA_GRAPH_TIMEOUT_SECONDS="30")
        try:
            async with asyncio.timeout(60):
                while await db.fetchval(
                    "SELECT count(*) FROM messages WHERE direction = 'out'"
                    " AND status IN ('queued', 'sending')"
                ):
                    await asyncio.sleep(0.1)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(15)
        bodies = await meta.sent_bodies()
        tags = [b["biz_opaque_callback_data"] for b in bodies]
        assert len(tags) == len(set(tags)), "a message was sent twice"
        rows = await db.fetch(
            "SELECT status, request->>'biz_opaque_callback_data' AS tag FROM messages"
            " WHERE direction = 'out'"
        )
        assert len(rows) == len(customers)
        statuses = {r["status"] for r in rows}
        assert statuses <= {"accepted", "sent", "delivered", "read", "unknown"}
        # Every message Meta has is one we know was sent or may have been; nothing else.
        sent = {r["tag"] for r in rows if r["status"] != "unknown"}
        assert sent <= set(tags)
        unknown = [r for r in rows if r["status"] == "unknown"]
        assert len(unknown) <= 5  # only sends in flight at the kill can be unknown


async def test_a_message_queued_while_an_earlier_one_waits_to_retry_goes_after_it(
    meta: Meta, db: asyncpg.Connection
) -> None:
    """Meta asks to retry the first message; a second for the same customer, queued while the
    first waits out its backoff (and so claimed apart from it), reaches Meta after it."""
    await meta.customer_writes()
    await _fault(meta, code=131000, times=1)
    first = (await meta.send(to=CUSTOMER, type="text", text={"body": "first"})).json()["id"]
    async with asyncio.timeout(10):
        while await db.fetchval(
            "SELECT status <> 'queued' OR attempts = 0 FROM messages WHERE id = $1::uuid", first
        ):
            await asyncio.sleep(0.01)
    second = (await meta.send(to=CUSTOMER, type="text", text={"body": "second"})).json()["id"]
    for message_id in (first, second):
        assert (await _terminal(meta, message_id))["status"] == "read"
    bodies = [b["text"]["body"] for b in await meta.sent_bodies()]
    assert bodies == ["first", "first", "second"]
