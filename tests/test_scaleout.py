"""Scale-out acceptance: 2 web processes and 3 worker processes on one database, 5,000 signed
deliveries and 2,000 sends, one worker killed with SIGKILL midway: every delivery indexed once,
every send accepted by the sandbox exactly once, nothing left claimed.

The web processes (`serve --no-worker`) and the workers (`wa-cloud worker`) are real processes
on loopback; the sandbox Meta runs in this test's event loop, and its request log is what tells
how many times each send reached Meta. A send the killed worker had in flight may end `unknown`
(it may or may not have reached Meta, so it is never sent again): such a send must have been
dispatched before the kill and reached the sandbox at most once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx

from tests.conftest import (
    NUMBER_A,
    NUMBER_B,
    WABA,
    Running,
    bound_socket,
    process_env,
    serve_asgi,
    start_worker,
)
from wa_cloud.config import Settings
from wa_cloud.db.pool import connect
from wa_cloud.inbound.signature import sign
from wa_cloud.sandbox.app import create_sandbox
from wa_cloud.sandbox.config import SandboxConfig

NUMBERS = [NUMBER_A, NUMBER_B] + [f"10654035224292{k}" for k in range(4, 10)]
DELIVERIES = 5_000
SENDS = 1_200
# Distinct customers writing in, in a shuffled order as Meta's traffic comes (each always to
# the same number), so concurrent indexing batches share contacts: before the indexer locked a
# batch's contacts in one global order, such batches deadlocked and indexing stalled.
CUSTOMERS = 500
_ORDER = random.Random(7).sample(range(5_000), 5_000)
CONCURRENCY = 32
KILL_AT = 0.4  # share of all requests answered when a worker is killed
# Sends are paced below what the API enqueues on 2 cores (80/s across the eight numbers, each
# allowed 80/s by the sandbox): a backlog builds, every number has its next second of sends
# claimed and waiting for their slots, so the killed worker dies holding some of them (queued
# again when its lease runs out) and, now and then, one whose request is in flight (`unknown`).
# Draining 1,200 at 80/s takes 15 s from the first send: the test takes about 20 s in all.
RATE = 10
TEMPLATE = "scaleout_notice"
READY_SECONDS = 30.0
# The sends' drain takes 10-15 s after the load; generous for a busy machine.
SETTLE_SECONDS = 90.0
FINAL = {"accepted", "sent", "delivered", "read"}

Job = Callable[[aiohttp.ClientSession], Awaitable[None]]


def _display(pnid: str) -> str:
    return "1555" + pnid[-7:]  # what the sandbox makes up when seeding gives none


def _customer(i: int) -> str:
    return f"1650555{_ORDER[i] % CUSTOMERS:04d}"


def _number_of_delivery(i: int) -> str:
    # So each customer is one number's contact.
    return NUMBERS[(_ORDER[i] % CUSTOMERS) % len(NUMBERS)]


def _wamid(i: int) -> str:
    return f"wamid.SCALEOUT{i:06d}"


def _delivery(i: int) -> bytes:
    """One inbound text shaped as Meta sends it, with a wamid of our own to look for."""
    pnid, customer = _number_of_delivery(i), _customer(i)
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": _display(pnid), "phone_number_id": pnid},
        "contacts": [{"profile": {"name": f"Customer {i % CUSTOMERS}"}, "wa_id": customer}],
        "messages": [
            {
                "from": customer,
                "id": _wamid(i),
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": f"inbound {i}"},
            }
        ],
    }
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(document).encode()


def _key(i: int) -> str:
    return f"scaleout-{i:05d}"


def _send(i: int) -> dict[str, Any]:
    """A template (no window needed) to a recipient of its own (the pair rate never binds),
    carrying its idempotency key as a parameter so the sandbox's log tells which send it was."""
    return {
        "from": NUMBERS[i % len(NUMBERS)],
        "to": f"4477{i:07d}",
        "type": "template",
        "template": {
            "name": TEMPLATE,
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": f"C{i}"},
                        {"type": "text", "text": _key(i)},
                    ],
                }
            ],
        },
        "idempotency_key": _key(i),
    }


# --- the processes ------------------------------------------------------------------------------


def _free_port() -> int:
    sock = bound_socket()
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def _start_web(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`wa-cloud serve --no-worker` as its own process, logging to `log`."""
    # One tenant key drives all 2,000 sends: the fixture's per-key limit is far above that.
    env = process_env(settings)
    command = [sys.executable, "-m", "wa_cloud.cli", "serve", "--no-worker"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"web process exited:\n{_tail(log)}"
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"web process not ready after {READY_SECONDS} s:\n{_tail(log)}")


async def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate, wait (without blocking the loop the sandbox answers on), then kill."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 15
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def _setup_tenant(web: Running, other: httpx.AsyncClient) -> str:
    """A tenant owning the numbers (registered through both web processes, paced at RATE) and
    the template its sends use; returns its API key."""
    tenant = await web.create_tenant("Scale Co")
    auth = {"authorization": f"Bearer {tenant['api_key']}"}
    seeded = await web.sandbox.post(
        "/_sandbox/templates",
        json={
            "waba_id": WABA,
            "name": TEMPLATE,
            "language": "en_US",
            "body": "Hello {{1}}, your reference is {{2}}.",
        },
    )
    assert seeded.status_code == 201, seeded.text
    for index, pnid in enumerate(NUMBERS):
        token = await web.seed_number(pnid)
        client = (web.client, other)[index % 2]
        added = await client.post(
            "/v1/numbers",
            json={"phone_number_id": pnid, "waba_id": WABA, "access_token": token},
            headers=auth,
        )
        assert added.status_code == 201, added.text
        patched = await client.patch(
            f"/v1/numbers/{pnid}", json={"throughput_mps": RATE}, headers=auth
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["throughput_mps"] == RATE
    return str(tenant["api_key"])


# --- the test -----------------------------------------------------------------------------------


async def test_scaleout_with_a_worker_killed_midway(settings: Settings, tmp_path: Path) -> None:
    started = time.monotonic()
    config = SandboxConfig(
        webhook_url=None,  # no status webhooks: the 5,000 deliveries are the only ones
        app_secret=settings.app_secret or "",
        request_log_limit=100_000,  # every send (and any retry) stays in the log
    )
    web_procs: list[subprocess.Popen[bytes]] = []
    workers: list[subprocess.Popen[bytes]] = []
    async with (
        serve_asgi(create_sandbox(config)) as sandbox_url,
        httpx.AsyncClient(base_url=sandbox_url, timeout=30) as sandbox,
    ):
        local = replace(settings, graph_base_url=sandbox_url)
        try:
            ports = [_free_port(), _free_port()]
            logs = [tmp_path / f"web{i}.log" for i in range(2)]
            web_procs = [_start_web(local, p, log) for p, log in zip(ports, logs, strict=True)]
            # The conftest's 1 s lease is shorter than an indexing batch of 100 takes on a loaded
            # 2-core machine: batches would outlive their leases and be taken over mid-way.
            workers = [start_worker(local, WA_WORKER_LEASE_SECONDS="5") for _ in range(3)]
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            await asyncio.gather(
                *(_ready(p, u, log) for p, u, log in zip(web_procs, urls, logs, strict=True))
            )
            async with (
                httpx.AsyncClient(base_url=urls[0], timeout=30) as web0,
                httpx.AsyncClient(base_url=urls[1], timeout=30) as web1,
            ):
                api_key = await _setup_tenant(Running(urls[0], web0, local, sandbox), web1)
            loaded = time.monotonic()
            killed_at = await _load(urls, api_key, settings.app_secret or "", workers[0])
            load_seconds = time.monotonic() - loaded
            assert workers[0].wait(timeout=5) == -signal.SIGKILL
            survivors = web_procs + workers[1:]
            conn = await connect(local.database_url or "")
            try:
                await _settle(conn, survivors)
                inbound = await _check_inbound(conn)
                outbound = await _check_sends(conn, sandbox, killed_at)
            finally:
                await conn.close()
            assert all(p.poll() is None for p in survivors), "a surviving process died"
            async with httpx.AsyncClient(timeout=30) as http:
                for url in urls:
                    # Started as `wa-cloud serve`: its startup heap is out of full collections.
                    scraped = (await http.get(f"{url}/metrics")).text
                    assert _gauge(scraped, "wa_gc_frozen_objects") > 50_000
            # Shown with -s: how much the kill actually interrupted (it varies from run to run).
            print(
                f"\nscale-out: load {load_seconds:.1f} s, total {time.monotonic() - started:.1f}"
                f" s; {inbound}; {outbound}"
            )
        finally:
            await _stop(web_procs + workers)


def _gauge(text: str, name: str) -> float:
    values = [float(line.split()[1]) for line in text.splitlines() if line.startswith(f"{name} ")]
    assert len(values) == 1, text
    return values[0]


async def _load(
    urls: list[str], api_key: str, app_secret: str, victim: subprocess.Popen[bytes]
) -> datetime:
    """Post the deliveries and the sends interleaved, alternating between the web processes,
    CONCURRENCY at a time; SIGKILL `victim` once KILL_AT of them were answered; return when.

    aiohttp rather than httpx: the load runs in this process beside the sandbox, and at a tenth
    of httpx's CPU per request it lets the web processes, not the load, set the pace."""
    auth = {"authorization": f"Bearer {api_key}"}

    async def deliver(http: aiohttp.ClientSession, i: int) -> None:
        body = _delivery(i)
        headers = {
            "content-type": "application/json",
            "x-hub-signature-256": sign(body, app_secret),
        }
        async with http.post(urls[i % 2] + "/webhook", data=body, headers=headers) as response:
            assert response.status == 200, await response.text()

    async def post_send(
        http: aiohttp.ClientSession, url: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        async with http.post(url + "/v1/messages", json=body, headers=auth) as response:
            return response.status, await response.json()

    async def send(http: aiohttp.ClientSession, i: int) -> None:
        body = _send(i)
        if i % 10 == 0:
            # The same key at both web processes at once: one message, one id, one send.
            first, again = await asyncio.gather(
                post_send(http, urls[0], body), post_send(http, urls[1], body)
            )
            assert sorted([first[0], again[0]]) == [200, 202], (first, again)
            assert first[1]["id"] == again[1]["id"]
            return
        status, answer = await post_send(http, urls[i % 2], body)
        assert status == 202, answer

    jobs: list[tuple[float, Job]] = [
        (i / DELIVERIES, functools.partial(deliver, i=i)) for i in range(DELIVERIES)
    ]
    jobs += [(i / SENDS, functools.partial(send, i=i)) for i in range(SENDS)]
    jobs.sort(key=lambda job: job[0])  # both kinds progress together
    gate = asyncio.Semaphore(CONCURRENCY)
    answered = 0
    kill_after = int(len(jobs) * KILL_AT)
    killed_at: datetime | None = None

    async def run(http: aiohttp.ClientSession, job: Job) -> None:
        nonlocal answered, killed_at
        async with gate:
            await job(http)
        answered += 1
        if answered == kill_after:
            victim.kill()
            killed_at = datetime.now(UTC)

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=2 * CONCURRENCY)
    # A TaskGroup: the first failed request cancels the rest instead of leaving them running.
    async with (
        aiohttp.ClientSession(timeout=timeout, connector=connector) as http,
        asyncio.TaskGroup() as group,
    ):
        for _, job in jobs:
            group.create_task(run(http, job))
    assert killed_at is not None
    return killed_at


async def _settle(conn: asyncpg.Connection, procs: list[subprocess.Popen[bytes]]) -> None:
    """Until no delivery is pending and every send is past queued/sending (bounded)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM deliveries WHERE state = 'pending') AS pending,
                      (SELECT count(*) FROM messages WHERE direction = 'out'
                          AND status IN ('queued', 'sending')) AS open"""
        )
        assert row is not None
        if row["pending"] == 0 and row["open"] == 0:
            return
        assert all(p.poll() is None for p in procs), "a surviving process died"
        assert time.monotonic() < deadline, f"not settled after {SETTLE_SECONDS} s: {dict(row)}"
        await asyncio.sleep(0.2)


async def _check_inbound(conn: asyncpg.Connection) -> str:
    deliveries = await conn.fetchrow(
        """SELECT count(*) AS total,
                  count(*) FILTER (WHERE state = 'processed') AS processed,
                  count(*) FILTER (WHERE lease_token IS NOT NULL AND state = 'pending') AS held,
                  count(*) FILTER (WHERE attempts > 1) AS reclaimed
             FROM deliveries"""
    )
    assert deliveries is not None
    # Each POST stored exactly one delivery, and every one ended processed (none quarantined).
    assert deliveries["total"] == DELIVERIES
    assert deliveries["processed"] == DELIVERIES
    assert deliveries["held"] == 0
    assert await conn.fetchval("SELECT count(*) FROM quarantine") == 0
    # Every wamid indexed, once (the unique index would refuse a second row; a missing or a
    # foreign one would show here).
    inbound = await conn.fetch(
        "SELECT wamid, delivery_id FROM messages WHERE direction = 'in' ORDER BY wamid"
    )
    assert [r["wamid"] for r in inbound] == sorted(_wamid(i) for i in range(DELIVERIES))
    assert all(r["delivery_id"] is not None for r in inbound)
    # One contact per customer who wrote, with the number written to; sends to new recipients
    # make none. No status was posted (the sandbox has no webhook URL) and every number is
    # owned, so nothing else was indexed.
    contacts = await conn.fetch(
        "SELECT phone_number_id, wa_id, last_inbound_at FROM contacts ORDER BY wa_id"
    )
    expected = sorted({(_number_of_delivery(i), _customer(i)) for i in range(DELIVERIES)})
    assert sorted((c["phone_number_id"], c["wa_id"]) for c in contacts) == expected
    assert all(c["last_inbound_at"] is not None for c in contacts)
    assert await conn.fetchval("SELECT count(*) FROM statuses") == 0
    assert await conn.fetchval("SELECT count(*) FROM events WHERE orphaned") == 0
    return f"deliveries claimed more than once: {deliveries['reclaimed']}"


async def _check_sends(
    conn: asyncpg.Connection, sandbox: httpx.AsyncClient, killed_at: datetime
) -> str:
    rows = await conn.fetch(
        """SELECT idempotency_key, phone_number_id, recipient, status, wamid, errors,
                  dispatched_at, attempts, lease_token, locked_until
             FROM messages WHERE direction = 'out'"""
    )
    by_key = {r["idempotency_key"]: r for r in rows}
    # One row per key, though a tenth of the keys were posted to both web processes at once.
    assert len(rows) == SENDS
    assert sorted(by_key) == sorted(_key(i) for i in range(SENDS))
    # Nothing left claimed.
    assert await conn.fetchval("SELECT count(*) FROM messages WHERE status = 'sending'") == 0
    assert [r["idempotency_key"] for r in rows if r["lease_token"] or r["locked_until"]] == []
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) <= FINAL | {"unknown"}, statuses

    # What the sandbox accepted, per send (the key rides in the template's parameters).
    log = (await sandbox.get("/_sandbox/requests", params={"path_contains": "/messages"})).json()
    accepted: Counter[str] = Counter()
    refused = 0
    for request in log["data"]:
        body = request["body"]
        if request["method"] != "POST" or not isinstance(body, dict) or "template" not in body:
            continue
        if request["status"] != 200:
            refused += 1
            continue
        key = body["template"]["components"][0]["parameters"][1]["text"]
        row = by_key[key]
        assert request["path"].endswith(f"/{row['phone_number_id']}/messages"), request["path"]
        assert body["to"] == row["recipient"]
        accepted[key] += 1
    assert [key for key, times in accepted.items() if times > 1] == []
    stats = (await sandbox.get("/_sandbox/stats")).json()["numbers"]
    assert sum(s["accepted"] for s in stats.values()) == sum(accepted.values())
    # Paced below each number's throughput, one recipient per send: Meta never refused one.
    assert refused == 0
    assert all(s["throughput_rejected"] == s["pair_rate_rejected"] == 0 for s in stats.values())

    for key, row in by_key.items():
        if row["status"] in FINAL:
            assert accepted[key] == 1, key
            assert row["wamid"] is not None, key
        else:
            # `unknown`: the killed worker had committed its dispatch mark (just before the
            # request leaves) and died before recording Meta's answer; recovery reports it and
            # never sends it again. So Meta has it once if the request left before the kill,
            # not at all if the kill came between the mark and the request; never twice. Any
            # other `unknown` (a dispatch after the kill, a Graph timeout) is not the kill's.
            assert accepted[key] <= 1, key
            assert row["dispatched_at"] is not None and row["dispatched_at"] <= killed_at, key
            assert row["errors"][0]["title"] == "Outcome unknown", row["errors"]
    wamids = [r["wamid"] for r in rows if r["wamid"] is not None]
    assert len(set(wamids)) == len(wamids)
    unknown_sent = sum(accepted[r["idempotency_key"]] for r in rows if r["status"] == "unknown")
    claimed_again = sum(1 for r in rows if r["attempts"] > 1)
    return (
        f"sends {dict(statuses)}, of the unknown {unknown_sent} reached the sandbox; "
        f"sends claimed again after a lost lease: {claimed_again}"
    )
