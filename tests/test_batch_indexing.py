"""Indexing stored deliveries in batches: what a batch must do however it is written.

These pin what holds whether a batch indexes its deliveries one by one, each in a savepoint, or
set-based (one statement per kind for the whole batch, bisecting on failure): a failing delivery
rolls back alone and is retried, then quarantined; concurrent batches sharing contacts and
wamids store each once, with statuses only moving forward; and the order of a batch's
deliveries does not change the rows it leaves.

Deliveries arrive through the real receiver (the web process without a worker, so they stay
pending), or for the batch of 500 through the statement its group commit runs, and are indexed
by `process_batch` called here, so each batch's composition is known.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.conftest import NUMBER_A, WABA, Running, wait_idle
from wa_cloud.config import Settings
from wa_cloud.db.pool import create_pool
from wa_cloud.db.queries import Q
from wa_cloud.inbound.index import PLATFORM_SOURCE
from wa_cloud.inbound.processor import BatchOutcome, RetryPolicy, process_batch
from wa_cloud.metrics import Metrics

POISON_CHECK = "test_poisoned_sender"
RANK = {"sent": 1, "delivered": 2, "read": 3}
ERRORS_131026 = [{"code": 131026, "title": "Message undeliverable"}]
ERRORS_131047 = [{"code": 131047, "title": "Re-engagement message"}]

Json = dict[str, Any]


@pytest.fixture
async def owner(web: Running) -> Json:
    """A tenant owning number A, on the web process alone: deliveries wait for our batches."""
    tenant = await web.create_tenant("Batch Co")
    added = await web.add_number(tenant["api_key"], NUMBER_A)
    assert added.status_code == 201, added.text
    return tenant


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert settings.database_url
    pool = await create_pool(settings.database_url, max_size=2)
    yield pool
    await pool.close()


def _message(wamid: str, sender: str, ts: int, **extra: Any) -> Json:
    return {
        "from": sender,
        "id": wamid,
        "timestamp": str(ts),
        "type": "text",
        "text": {"body": f"message {wamid}"},
        **extra,
    }


def _status(wamid: str, status: str, ts: int, recipient: str, errors: list[Json] | None) -> Json:
    raw: Json = {"id": wamid, "status": status, "timestamp": str(ts), "recipient_id": recipient}
    if errors is not None:
        raw["errors"] = errors
    return raw


def _change(messages: Iterable[Json] = (), statuses: Iterable[Json] = ()) -> Json:
    """One `messages` change for number A, with a contacts entry per sender as Meta sends."""
    value: Json = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER_A},
    }
    messages, statuses = list(messages), list(statuses)
    if messages:
        senders = dict.fromkeys(m["from"] for m in messages)
        value["contacts"] = [{"profile": {"name": f"Customer {s}"}, "wa_id": s} for s in senders]
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    return {"field": "messages", "value": value}


def _body(*changes: Json) -> bytes:
    """A delivery with one entry per change: entries are indexed in the order given."""
    entries = [{"id": WABA, "changes": [change]} for change in changes]
    return json.dumps({"object": "whatsapp_business_account", "entry": entries}).encode()


async def _receive(web: Running, bodies: Iterable[bytes]) -> None:
    # One at a time: each 200 follows its commit, so deliveries' ids follow this order, and a
    # batch claims them in it.
    async with asyncio.timeout(15):
        for body in bodies:
            response = await web.post_webhook(body)
            assert response.status_code == 200, response.text


async def _outbound(db: asyncpg.Connection, tenant_id: str, wamid: str, recipient: str) -> None:
    """An outbound message as the outbox records it once Meta accepted it."""
    await db.execute(
        "INSERT INTO messages (tenant_id, phone_number_id, wamid, direction, type, payload,"
        " recipient, status) VALUES ($1::uuid, $2, $3, 'out', 'text', '{}'::jsonb, $4,"
        " 'accepted')",
        tenant_id,
        NUMBER_A,
        wamid,
        recipient,
    )


async def _process(pool: asyncpg.Pool, batch_size: int, max_attempts: int) -> BatchOutcome:
    return await process_batch(
        pool,
        batch_size=batch_size,
        lease_seconds=30.0,  # longer than any test: a lease never runs out mid-batch here
        policy=RetryPolicy(max_attempts=max_attempts),
        metrics=Metrics(),
    )


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def _states(db: asyncpg.Connection) -> dict[str, int]:
    return dict(await db.fetch("SELECT state, count(*) FROM deliveries GROUP BY state"))


async def test_one_poisonous_delivery_in_a_batch_of_500_fails_alone(
    web: Running, owner: Json, pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    max_attempts = web.settings.worker_max_attempts
    poisoned = "16505559999"
    # A CHECK that refuses the poisoned sender's contact: its delivery fails on every attempt.
    await db.execute(
        f"ALTER TABLE contacts ADD CONSTRAINT {POISON_CHECK} CHECK (wa_id <> $${poisoned}$$)"
    )
    base = int(time.time()) - 3600
    customers = [f"1650555{k:04d}" for k in range(40)]
    outbound = {k: f"wamid.OUT-batch-{k}" for k in range(5)}
    for k, wamid in outbound.items():
        await _outbound(db, owner["id"], wamid, customers[k])
    await _outbound(db, owner["id"], "wamid.OUT-poison", customers[0])
    bodies: list[bytes] = []
    expected: dict[str, int] = {}  # inbound wamid -> its position among the deliveries
    for i in range(500):
        if i == 250:
            # In the middle of the batch, and with a good status beside the bad message: a
            # delivery is indexed whole or not at all.
            poison = _message("wamid.poison", poisoned, base + i)
            status = _status("wamid.OUT-poison", "read", base + i, customers[0], None)
            bodies.append(_body(_change([poison], [status])))
            continue
        statuses = []
        if i % 100 in (3, 60):  # each outbound message delivered, then read
            kind = "delivered" if i % 100 == 3 else "read"
            statuses.append(_status(outbound[i // 100], kind, base + i, customers[i // 100], None))
        wamid = f"wamid.batch-{i}"
        bodies.append(_body(_change([_message(wamid, customers[i % 40], base + i)], statuses)))
        expected[wamid] = i
    # Stored by the receiver's own statement, as one group commit of 500 bodies (500 requests
    # would spend most of the test's time on HTTP).
    await db.execute(Q.insert_deliveries, [PLATFORM_SOURCE] * len(bodies), bodies)
    id_of = {bytes(r["body"]): r["id"] for r in await db.fetch("SELECT id, body FROM deliveries")}
    ids = [id_of[body] for body in bodies]
    poison_id = ids[250]

    async with asyncio.timeout(20):
        first = await _process(pool, batch_size=500, max_attempts=max_attempts)
        assert first.claimed == 500
        # The 499 committed, each message once and by its own delivery; nothing of the poison.
        assert await _states(db) == {"processed": 499, "pending": 1}
        stored = dict(
            await db.fetch("SELECT wamid, delivery_id FROM messages WHERE direction = 'in'")
        )
        assert stored == {wamid: ids[i] for wamid, i in expected.items()}
        assert await db.fetchval("SELECT count(*) FROM contacts") == len(customers)
        statuses = await db.fetch("SELECT wamid, status FROM statuses")
        assert sorted((r["wamid"], r["status"]) for r in statuses) == sorted(
            (w, s) for w in outbound.values() for s in ("delivered", "read")
        )
        out = dict(await db.fetch("SELECT wamid, status FROM messages WHERE direction = 'out'"))
        assert out == {**dict.fromkeys(outbound.values(), "read"), "wamid.OUT-poison": "accepted"}
        # Only the poison is retried: later, with the reason kept; the others took one attempt.
        poison = await db.fetchrow(
            "SELECT state, attempts, last_error, run_after > now() AS later FROM deliveries"
            " WHERE id = $1",
            poison_id,
        )
        assert (poison["state"], poison["attempts"], poison["later"]) == ("pending", 1, True)
        assert POISON_CHECK in poison["last_error"]
        others = await db.fetchrow(
            "SELECT min(attempts), max(attempts), count(last_error) FROM deliveries WHERE id <> $1",
            poison_id,
        )
        assert tuple(others) == (1, 1, 0)

        # Its retries (the backoff skipped: the retries are what is under test) take only it,
        # until the last allowed attempt quarantines it.
        for attempt in range(2, max_attempts + 1):
            await db.execute("UPDATE deliveries SET run_after = now() WHERE state = 'pending'")
            again = await _process(pool, batch_size=500, max_attempts=max_attempts)
            assert again.claimed == 1
            state = await db.fetchval("SELECT state FROM deliveries WHERE id = $1", poison_id)
            assert state == ("quarantined" if attempt == max_attempts else "pending")
        assert (await _process(pool, batch_size=500, max_attempts=max_attempts)).claimed == 0

    assert await _states(db) == {"processed": 499, "quarantined": 1}
    quarantined = await db.fetchrow(
        "SELECT d.id, d.attempts, q.code, q.reason FROM deliveries d"
        " JOIN quarantine q ON q.delivery_id = d.id"
    )
    assert (quarantined["id"], quarantined["attempts"]) == (poison_id, max_attempts)
    assert quarantined["code"] == "processing_failed"
    assert POISON_CHECK in quarantined["reason"]
    assert await db.fetchval("SELECT max(attempts) FROM deliveries WHERE id <> $1", poison_id) == 1
    assert await db.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'") == 499
    assert await db.fetchval("SELECT count(*) FROM statuses WHERE wamid = 'wamid.OUT-poison'") == 0


# How far each outbound message's statuses go, in whatever order they arrive: `failed` wins
# whenever it comes (even after `read`), otherwise the highest of sent < delivered < read.
RACE_STATUSES: dict[int, tuple[str, ...]] = {
    0: ("sent", "delivered", "read"),
    1: ("sent", "failed"),
    2: ("sent", "delivered"),
    3: ("sent",),
    4: ("sent", "delivered", "read", "failed"),
    5: ("delivered", "read"),
    6: ("failed",),
    7: ("read", "sent"),
}


async def _drain(pool: asyncpg.Pool, max_attempts: int) -> int:
    """One worker's loop of small batches until nothing is pending; how many it claimed."""
    claimed = 0
    while True:
        outcome = await _process(pool, batch_size=4, max_attempts=max_attempts)
        claimed += outcome.claimed
        if not outcome.claimed:
            if not await pool.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'"):
                return claimed
            await asyncio.sleep(0.05)  # the other loop holds the rest, or a retry waits


async def test_two_workers_racing_on_shared_contacts_and_wamids_store_each_once(
    web: Running, owner: Json, settings: Settings, db: asyncpg.Connection
) -> None:
    rng = random.Random(20261201)
    base = int(time.time()) - 7200
    customers = [f"4477009{k:05d}" for k in range(6)]
    events: list[tuple[Json, Json]] = []  # (message, status) pairs, one side empty
    sender: dict[str, str] = {}
    latest: dict[str, int] = {}
    for n in range(60):
        wamid, customer, ts = f"wamid.race-in-{n}", customers[n % 6], base + rng.randrange(3600)
        sender[wamid] = customer
        latest[customer] = max(latest.get(customer, 0), ts)
        # Meta redelivers: the same message in three deliveries.
        events += [(_message(wamid, customer, ts), {})] * 3
    expected_statuses: set[tuple[str, str, str]] = set()
    expected_out: dict[str, tuple[str, datetime, list[Json]]] = {}
    for k, kinds in RACE_STATUSES.items():
        wamid, recipient = f"wamid.race-out-{k}", customers[k % 6]
        await _outbound(db, owner["id"], wamid, recipient)
        at = {kind: base + 100 * k + RANK.get(kind, 9) for kind in kinds}
        for kind in kinds:
            errors = ERRORS_131026 if kind == "failed" else None
            events += [({}, _status(wamid, kind, at[kind], recipient, errors))] * 2
            expected_statuses.add((NUMBER_A, wamid, kind))
        final = "failed" if "failed" in kinds else max(kinds, key=RANK.__getitem__)
        expected_out[wamid] = (final, _at(at[final]), ERRORS_131026 if final == "failed" else [])
    rng.shuffle(events)
    bodies: list[bytes] = []
    while events:
        chunk = events[: rng.randint(1, 4)]
        events = events[len(chunk) :]
        messages = [m for m, _ in chunk if m]
        statuses = [s for _, s in chunk if s]
        bodies.append(_body(_change(messages, statuses)))
    await _receive(web, bodies)

    assert settings.database_url
    pools = [await create_pool(settings.database_url, max_size=2) for _ in range(2)]
    try:
        async with asyncio.timeout(20):
            max_attempts = settings.worker_max_attempts
            claimed = await asyncio.gather(*(_drain(p, max_attempts) for p in pools))
    finally:
        for p in pools:
            await p.close()
    assert all(claimed), claimed  # both took part: the race happened

    assert await _states(db) == {"processed": len(bodies)}
    assert await db.fetchval("SELECT count(*) FROM quarantine") == 0
    contacts = await db.fetch("SELECT id, wa_id, last_inbound_at FROM contacts")
    assert sorted(c["wa_id"] for c in contacts) == customers
    # The window is the newest message's, whatever order the batches indexed them in.
    assert {c["wa_id"]: c["last_inbound_at"] for c in contacts} == {
        customer: _at(ts) for customer, ts in latest.items()
    }
    wa_id_of = {c["id"]: c["wa_id"] for c in contacts}
    inbound = await db.fetch("SELECT wamid, contact_id FROM messages WHERE direction = 'in'")
    assert len(inbound) == len(sender)
    assert {m["wamid"]: wa_id_of[m["contact_id"]] for m in inbound} == sender
    statuses = await db.fetch("SELECT phone_number_id, wamid, status FROM statuses")
    assert len(statuses) == len(expected_statuses)
    assert {tuple(s) for s in statuses} == expected_statuses
    out = await db.fetch(
        "SELECT wamid, status, status_at, errors FROM messages WHERE direction = 'out'"
    )
    assert {m["wamid"]: (m["status"], m["status_at"], m["errors"]) for m in out} == expected_out


@pytest.mark.parametrize("order", ["status_first", "message_first"])
async def test_a_status_before_the_customers_message_in_one_batch_is_order_independent(
    web: Running, owner: Json, pool: asyncpg.Pool, db: asyncpg.Connection, order: str
) -> None:
    """Statuses only advance outbound messages (the outbox's rows); what a status and the
    customer's next message share is the contact and its window. Processed status first (the
    case under test) or message first (the reference), one batch leaves the same rows."""
    max_attempts = web.settings.worker_max_attempts
    now = int(time.time())
    earlier, reported_at, wrote_at = now - 7200, now - 120, now - 60
    known, new, fresh, same = (f"1650555{k:04d}" for k in (101, 102, 103, 104))
    outbound = {c: f"wamid.OUT-{c}" for c in (known, new, fresh, same)}
    for customer, wamid in outbound.items():
        await _outbound(db, owner["id"], wamid, customer)
    # Only `known` has written before (its contact exists); the others write for the first time.
    await _receive(web, [_body(_change([_message("wamid.in-earlier", known, earlier)]))])
    assert (await _process(pool, batch_size=10, max_attempts=max_attempts)).claimed == 1

    statuses = [
        _body(_change([], [_status(outbound[known], "failed", reported_at, known, ERRORS_131047)])),
        _body(_change([], [_status(outbound[new], "read", reported_at, new, None)])),
        _body(_change([], [_status(outbound[fresh], "failed", reported_at, fresh, ERRORS_131047)])),
    ]
    messages = _body(
        _change(
            [
                _message("wamid.in-known", known, wrote_at),
                _message("wamid.in-new", new, wrote_at, context={"id": outbound[new]}),
                _message("wamid.in-fresh", fresh, wrote_at),
            ]
        )
    )
    # And within one delivery: an entry with the status, an entry with the message.
    status_entry = _change([], [_status(outbound[same], "delivered", reported_at, same, None)])
    message_entry = _change([_message("wamid.in-same", same, wrote_at)])
    if order == "status_first":
        batch = [*statuses, _body(status_entry, message_entry), messages]
    else:
        batch = [messages, _body(message_entry, status_entry), *statuses]
    await _receive(web, batch)
    async with asyncio.timeout(20):
        outcome = await _process(pool, batch_size=50, max_attempts=max_attempts)
    assert outcome.claimed == len(batch)
    assert await _states(db) == {"processed": len(batch) + 1}

    rows = await db.fetch("SELECT wamid, status FROM statuses ORDER BY wamid")
    assert [tuple(r) for r in rows] == sorted(
        [
            (outbound[known], "failed"),
            (outbound[new], "read"),
            (outbound[fresh], "failed"),
            (outbound[same], "delivered"),
        ]
    )
    out = await db.fetch(
        "SELECT recipient, status, status_at, errors FROM messages WHERE direction = 'out'"
    )
    assert {m["recipient"]: (m["status"], m["status_at"], m["errors"]) for m in out} == {
        known: ("failed", _at(reported_at), ERRORS_131047),
        new: ("read", _at(reported_at), []),
        fresh: ("failed", _at(reported_at), ERRORS_131047),
        same: ("delivered", _at(reported_at), []),
    }
    contacts = {
        c["wa_id"]: c
        for c in await db.fetch(
            "SELECT id, wa_id, name, last_inbound_at, window_closed_at FROM contacts"
        )
    }
    assert sorted(contacts) == sorted([known, new, fresh, same])
    assert {w: c["last_inbound_at"] for w, c in contacts.items()} == dict.fromkeys(
        contacts, _at(wrote_at)
    )
    assert {w: c["name"] for w, c in contacts.items()} == {w: f"Customer {w}" for w in contacts}
    # `known`'s 131047 lands on its contact in either order; `fresh` had no contact when its
    # status came first, so only its window (below) is the same in both orders, not the column.
    assert contacts[known]["window_closed_at"] == _at(reported_at)
    assert contacts[new]["window_closed_at"] is None
    assert contacts[same]["window_closed_at"] is None
    inbound = await db.fetch(
        "SELECT wamid, contact_id, context_wamid FROM messages WHERE direction = 'in'"
    )
    assert {m["wamid"]: (m["contact_id"], m["context_wamid"]) for m in inbound} == {
        "wamid.in-earlier": (contacts[known]["id"], None),
        "wamid.in-known": (contacts[known]["id"], None),
        "wamid.in-new": (contacts[new]["id"], outbound[new]),
        "wamid.in-fresh": (contacts[fresh]["id"], None),
        "wamid.in-same": (contacts[same]["id"], None),
    }
    # The customers wrote after the failures: every window is open, for 24 h from their message.
    listed = await web.client.get(
        "/v1/contacts",
        params={"phone_number_id": NUMBER_A},
        headers={"authorization": f"Bearer {owner['api_key']}"},
    )
    assert listed.status_code == 200, listed.text
    windows = {
        c["wa_id"]: (c["window_open"], datetime.fromisoformat(c["window_expires_at"]))
        for c in listed.json()["data"]
    }
    assert windows == dict.fromkeys(contacts, (True, _at(wrote_at) + timedelta(hours=24)))


async def test_a_steady_trickle_is_indexed_in_gathered_batches(
    app: Running, db: asyncpg.Connection
) -> None:
    """Deliveries posted one after another (each when the last was answered, a few ms apart) are
    not claimed one or two at a time: an indexer that emptied the queue lets the next gather
    first. (A batch's rows share `processed_at`, when its transaction began.) Before: 37 and 50
    batches in two runs; now 10 and 14."""
    tenant = await app.create_tenant("Trickle Co")
    added = await app.add_number(tenant["api_key"], NUMBER_A)
    assert added.status_code == 201, added.text
    ts = int(time.time())
    async with asyncio.timeout(15):
        for i in range(60):
            body = _body(_change([_message(f"wamid.trickle{i}", f"1555000{i:04d}", ts)]))
            response = await app.post_webhook(body)
            assert response.status_code == 200, response.text
    await wait_idle(db)
    batches = await db.fetchval(
        "SELECT count(DISTINCT processed_at) FROM deliveries WHERE state = 'processed'"
    )
    indexed = await db.fetchval("SELECT count(*) FROM messages WHERE wamid LIKE 'wamid.trickle%'")
    assert indexed == 60
    assert batches <= 20, f"60 deliveries in {batches} batches"
