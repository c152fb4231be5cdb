"""Every hot query has an index to serve it, read from EXPLAIN.

With sequential scans disabled the planner still falls back to one when no index can serve the
query, so a `Seq Scan` left in the plan means a missing index: the query would read the whole
table once the table is large (the status page counted a tenant's messages that way).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import pytest

from wa_cloud.db.queries import Q

TENANT = uuid.uuid4()
DAY = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NUMBER = "106540352242922"

# (query, arguments, the tables it must not scan sequentially)
HOT: dict[str, tuple[str, tuple[Any, ...], tuple[str, ...]]] = {
    "status page: messages of the day": (Q.page_message_counts, (TENANT, DAY), ("messages",)),
    "status page: open windows": (Q.page_window_candidates, (TENANT, DAY), ("contacts",)),
    "media by tenant and id": (Q.tenant_media, (TENANT, "1232492663331480"), ("media",)),
    "contacts of a number, a page": (
        Q.list_contacts,
        (TENANT, NUMBER, None, 51, [], {}),
        ("contacts",),
    ),
    "a contact by wa_id or user_id": (
        Q.find_tenant_contact,
        (TENANT, NUMBER, "16505551234"),
        ("contacts",),
    ),
    "a contact's messages": (
        Q.contact_messages,
        (TENANT, 1, None, None, 51),
        ("messages",),
    ),
    "a message by id": (Q.get_message, (uuid.uuid4(), TENANT), ("messages",)),
    "conversations past their retention, with their media": (
        Q.purge_conversations,
        (2000, 24),
        ("messages", "media"),
    ),
    "a reply's debit, once per reply": (
        Q.debit_reply,
        (TENANT, NUMBER, 1, 2),
        ("tenants", "credit_ledger"),
    ),
    "a tenant's ledger, newest first": (
        Q.usage_ledger,
        (TENANT, None, None, 100),
        ("credit_ledger",),
    ),
    "a tenant's tokens": (Q.usage_tokens, (TENANT, None, None), ("token_usage",)),
    "a person's send takes the conversation over": (
        Q.human_takeover,
        (1, NUMBER, TENANT, 30.0),
        ("contacts", "bots"),
    ),
    "reply jobs to claim, fair per tenant": (
        Q.claim_replies,
        (32, 30.0, [], [], 8),
        ("replies",),
    ),
    "the replier's next wake-up": (Q.next_reply_due, ([],), ("replies",)),
    "finished reply jobs past retention": (
        Q.delete_finished_replies,
        (600.0, 100),
        ("replies",),
    ),
    "a reply job's context": (
        Q.reply_context,
        (NUMBER, 1, TENANT),
        ("numbers", "tenants", "contacts", "bots"),
    ),
    "follow-ups to send, fair per tenant": (
        Q.claim_follow_ups,
        (16, 30.0, DAY, [], [], 4),
        ("follow_ups",),
    ),
    "the follow-up sender's next wake-up": (Q.next_follow_up_due, ([], DAY), ("follow_ups",)),
    "an inbound message cancels follow-ups": (
        Q.cancel_follow_ups_on_inbound,
        ([1, 2],),
        ("follow_ups",),
    ),
    "a contact's follow-ups": (Q.list_follow_ups, (1, TENANT, None, 51), ("follow_ups",)),
    "finished follow-ups past retention": (
        Q.delete_old_follow_ups,
        (600.0, 100),
        ("follow_ups",),
    ),
    "a follow-up's debit, once": (
        Q.debit_follow_up,
        (TENANT, NUMBER, 1, 2),
        ("tenants", "credit_ledger"),
    ),
    "a status's message, by number and wamid": (
        Q.advance_message_statuses,
        ([NUMBER], ["wamid.A"], ["read"], [DAY], [None], [None], [TENANT]),
        ("messages",),
    ),
    "a wamid another message of the number has": (
        Q.record_accepted,
        ([uuid.uuid4()], ["wamid.A"], [{"type": "text"}], [False], ["text"], [uuid.uuid4()]),
        ("messages", "statuses"),
    ),
    "a web session's send still waiting for its wamid": (
        Q.send_in_flight,
        (NUMBER, 1, "16505551234"),
        ("messages",),
    ),
    "a tenant by API key": (Q.tenant_by_key, (b"\x00" * 32,), ("api_keys", "tenants")),
    "is the number the tenant's": (Q.tenant_has_number, (NUMBER, TENANT), ("numbers",)),
    "deliveries to claim": (Q.claim_deliveries, (uuid.uuid4(), 30.0, 100), ("deliveries",)),
    # Each row claimed looks up the nearest message ahead of it in its recipient's line.
    "a number's due sends to claim, each with its recipient's line": (
        Q.claim_messages,
        (NUMBER, 20, uuid.uuid4(), 30.0, 0),
        ("messages",),
    ),
    "inbound media to download, fair per tenant": (
        Q.claim_media,
        (8, 120.0, [uuid.uuid4()]),
        ("media",),
    ),
    "forwards to deliver, fair per tenant": (
        Q.claim_forwards,
        (32, uuid.uuid4(), 30.0, 4, [uuid.uuid4()], [1]),
        ("forwards",),
    ),
    "orphaned events to adopt": (
        Q.adopt_orphaned_events,
        (NUMBER, "102290129340398", "platform"),
        ("events",),
    ),
}


def _scans(plan: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.append((plan["Node Type"], plan["Relation Name"]))
        for value in plan.values():
            found += _scans(value)
    elif isinstance(plan, list):
        for value in plan:
            found += _scans(value)
    return found


@pytest.mark.parametrize("name", sorted(HOT))
async def test_hot_query_uses_an_index(db: asyncpg.Connection, name: str) -> None:
    query, args, tables = HOT[name]
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        # EXPLAIN without ANALYZE plans the statement, never runs it (claims change nothing).
        plan = await db.fetchval("EXPLAIN (FORMAT JSON) " + query, *args)
    scans = _scans(json.loads(plan) if isinstance(plan, str) else plan)
    sequential = [table for node, table in scans if node == "Seq Scan" and table in tables]
    assert not sequential, f"{name}: no index serves it on {sequential}: {scans}"


async def test_estimated_delivery_counts_for_a_large_table(db: asyncpg.Connection) -> None:
    # Past EXACT_COUNT_BELOW the scrape counts pending and quarantined only, and takes the
    # processed count from the planner's estimate it passes in.
    await db.execute("INSERT INTO deliveries (source, body) VALUES ('platform', '\\x7b7d')")
    rows = await db.fetch(Q.delivery_counts_estimated, 300_000)
    assert {r["state"]: r["n"] for r in rows} == {"pending": 1, "processed": 299_999}


def _indexes(plan: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.append((plan["Relation Name"], plan["Index Name"]))
        for value in plan.values():
            found += _indexes(value)
    elif isinstance(plan, list):
        for value in plan:
            found += _indexes(value)
    return found


async def test_batch_contact_lookups_take_the_identifier_indexes_before_any_analyse(
    db: asyncpg.Connection,
) -> None:
    """A new deployment's contacts table grows faster than autovacuum analyses it. Without
    statistics the planner once valued the tenant-led index as cheap as the unique one and read
    every contact of the number for each sender of a batch."""
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1, 'Plan Co')", TENANT)
    await db.execute(
        "INSERT INTO contacts (tenant_id, phone_number_id, wa_id, last_inbound_at)"
        " SELECT $1, $2, (16500000000 + g)::text, now() FROM generate_series(1, 20000) g",
        TENANT,
        NUMBER,
    )
    keys = [str(16500000000 + g) for g in range(1, 201)]
    args = ([TENANT] * 200, [NUMBER] * 200, keys, [None] * 200, list(range(200)))
    plan = await db.fetchval("EXPLAIN (FORMAT JSON) " + Q.find_contacts, *args)
    used = {index for table, index in _indexes(json.loads(plan)) if table == "contacts"}
    assert used == {"contacts_wa_id", "contacts_user_id"}, used
