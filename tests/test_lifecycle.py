"""Data lifecycle and secrets hygiene: the retention job, deleting a tenant, revocable and
refusable status links, the invitation link kept out of production logs, SMTP AUTH only over
TLS, and `rotate-key` checking what it re-sealed.

Rows are inserted directly where the API would only add a Graph round trip; what is asserted
is what the database holds afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import logging
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Running, pool_of, process_env, serve
from tests.test_status_page import LINK, rendered_logs, running, seed
from wa_cloud.config import Settings
from wa_cloud.retention import RETENTION_INTERVAL_SECONDS, RetentionReport, run_retention
from wa_cloud.secretbox import SecretBox
from wa_cloud.tenants import links, sealed
from wa_cloud.tenants.rotation import rotate

NUMBER_1 = "106540352242951"
NUMBER_2 = "106540352242952"
WABA_1 = "102290129340391"
WABA_2 = "102290129340392"
WABA_SHARED = "102290129340393"
DAY = timedelta(days=1)


async def new_tenant(db: asyncpg.Connection, name: str = "T") -> uuid.UUID:
    tenant_id: uuid.UUID = await db.fetchval(
        "INSERT INTO tenants (name) VALUES ($1) RETURNING id", name
    )
    return tenant_id


async def add_app(
    db: asyncpg.Connection,
    tenant_id: uuid.UUID,
    app_id: str,
    secret_box: SecretBox,
    token_box: SecretBox,
    *,
    secret: str = "app-secret",
) -> None:
    """A tenant's app as its row is stored: secret and verify token sealed (by the boxes given)."""
    await db.execute(
        "INSERT INTO apps (app_id, tenant_id, app_secret_enc, verify_token_enc)"
        " VALUES ($1, $2, $3, $4)",
        app_id,
        tenant_id,
        secret_box.seal(secret, context=sealed.APP_SECRET.context(app_id)),
        token_box.seal("verify", context=sealed.APP_VERIFY_TOKEN.context(app_id)),
    )


async def add_number(
    db: asyncpg.Connection,
    tenant_id: uuid.UUID,
    number: str,
    waba: str,
    box: SecretBox | None = None,
    **columns: Any,
) -> None:
    token = box.seal("EAAG-" + number, context=sealed.NUMBER_TOKEN.context(number)) if box else None
    pin = box.seal("123456", context=sealed.NUMBER_PIN.context(number)) if box else None
    names = ", ".join(columns)
    marks = "".join(f", ${i}" for i in range(6, 6 + len(columns)))
    await db.execute(
        f"INSERT INTO numbers (phone_number_id, tenant_id, waba_id, access_token_enc, pin_enc"
        f"{', ' + names if columns else ''}) VALUES ($1, $2, $3, $4, $5{marks})",
        number,
        tenant_id,
        waba,
        token,
        pin,
        *columns.values(),
    )


async def add_delivery(
    db: asyncpg.Connection, state: str, age: timedelta, body: bytes = b'{"entry": []}'
) -> int:
    delivery_id: int = await db.fetchval(
        "INSERT INTO deliveries (source, body, state, received_at) VALUES ('platform', $1, $2,"
        " now() - $3::interval) RETURNING id",
        body,
        state,
        age,
    )
    return delivery_id


# -- the migration ----------------------------------------------------------------------------


async def test_migration_adds_link_generation_and_media_retention(db: asyncpg.Connection) -> None:
    tenant_id = await new_tenant(db)
    await add_number(db, tenant_id, NUMBER_1, WABA_1)
    assert await db.fetchval("SELECT link_generation FROM tenants") == 0
    assert await db.fetchval("SELECT media_retention_days FROM numbers") == 90
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE numbers SET media_retention_days = 0")
    indexes = {
        r["indexname"]
        for r in await db.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    }
    assert {"deliveries_retention", "forwards_retention", "media_retention"} <= indexes


# -- retention --------------------------------------------------------------------------------


@dataclass
class Aged:
    """Rows of every kind on both sides of their retention, by what should happen to them."""

    cleared: list[int] = field(default_factory=list)  # deliveries whose body goes
    kept: list[int] = field(default_factory=list)  # deliveries whose body stays
    message_delivery: int = 0


async def seed_aged_rows(db: asyncpg.Connection) -> Aged:
    aged = Aged()
    tenant_id = await new_tenant(db)
    await add_number(db, tenant_id, NUMBER_1, WABA_1)  # media kept 90 days (the default)
    await add_number(db, tenant_id, NUMBER_2, WABA_1, media_retention_days=10)

    old_processed = await add_delivery(db, "processed", 8 * DAY)
    old_quarantined = await add_delivery(db, "quarantined", 30 * DAY)
    await db.execute(
        "INSERT INTO quarantine (delivery_id, code, reason) VALUES ($1, 'bad_json', 'x')",
        old_quarantined,
    )
    aged.cleared = [old_processed, old_quarantined]
    aged.kept = [
        await add_delivery(db, "pending", 9 * DAY),  # never processed: never touched
        await add_delivery(db, "processed", 6 * DAY),  # inside Meta's retry horizon
    ]
    # The index rows that point at a cleared delivery keep pointing at it.
    await db.execute(
        "INSERT INTO messages (tenant_id, phone_number_id, direction, type, payload, status,"
        " delivery_id, wamid) VALUES ($1, $2, 'in', 'text', '{}', 'received', $3, 'wamid.1')",
        tenant_id,
        NUMBER_1,
        old_processed,
    )
    aged.message_delivery = old_processed

    for state, age, key in (
        ("delivered", 8 * DAY, b"f1"),
        ("failed", 20 * DAY, b"f2"),
        ("pending", 8 * DAY, b"f3"),  # still the queue
        ("delivered", 2 * DAY, b"f4"),
    ):
        await db.execute(
            "INSERT INTO forwards (tenant_id, event, payload, dedup_key, state, created_at)"
            " VALUES ($1, 'message.received', '{\"a\": 1}', $2, $3, now() - $4::interval)",
            tenant_id,
            key,
            state,
            age,
        )
    for orphaned, age, key in (
        (True, 8 * DAY, b"e1"),
        (True, 1 * DAY, b"e2"),
        (False, 30 * DAY, b"e3"),  # a tenant's event: not the retention job's
    ):
        await db.execute(
            "INSERT INTO events (tenant_id, field, kind, orphaned, payload, dedup_key, created_at)"
            " VALUES ($1, 'messages', 'x', $2, '{}', $3, now() - $4::interval)",
            None if orphaned else tenant_id,
            orphaned,
            key,
            age,
        )
    for number, media_id, state, age in (
        (NUMBER_1, "m-old", "stored", 91 * DAY),
        (NUMBER_1, "m-young", "stored", 89 * DAY),
        (NUMBER_1, "m-failed", "failed", 100 * DAY),
        (NUMBER_1, "m-pending", "pending", 100 * DAY),  # still the download queue
        (NUMBER_2, "m-short", "stored", 11 * DAY),
        (NUMBER_2, "m-short-young", "stored", 9 * DAY),
    ):
        await db.execute(
            "INSERT INTO media (tenant_id, phone_number_id, media_id, state, content, created_at)"
            " VALUES ($1, $2, $3, $4, $5, now() - $6::interval)",
            tenant_id,
            number,
            media_id,
            state,
            b"\xff\xd8 jpeg bytes" if state == "stored" else None,
            age,
        )
    for recipient, tat in (
        ("16505550001", timedelta(minutes=-5)),  # passed long ago: paces nothing
        ("16505550002", timedelta(seconds=-10)),
        ("16505550003", timedelta(seconds=30)),
    ):
        await db.execute(
            "INSERT INTO pair_pacing (phone_number_id, recipient, tat)"
            " VALUES ($1, $2, now() + $3::interval)",
            NUMBER_1,
            recipient,
            tat,
        )
    return aged


async def test_retention_pass_removes_what_aged_out_and_nothing_else(
    db: asyncpg.Connection, settings: Settings
) -> None:
    aged = await seed_aged_rows(db)
    async with pool_of(settings.database_url or "") as pool:
        # Batches of two: every kind needs several, and the loop must run them all.
        report = await run_retention(pool, settings, batch_size=2)
        assert report == RetentionReport(
            delivery_bodies=2, forwards=2, orphaned_events=1, media=3, pair_pacing=1
        )
        assert report.total == 9 and not report.busy
        again = await run_retention(pool, settings, batch_size=2)
    assert again.total == 0

    bodies = {r["id"]: bytes(r["body"]) for r in await db.fetch("SELECT id, body FROM deliveries")}
    assert all(bodies[i] == b"" for i in aged.cleared)
    assert all(bodies[i] == b'{"entry": []}' for i in aged.kept)
    # Rows stay: the message still names its delivery, the quarantine reason is still there.
    assert await db.fetchval("SELECT delivery_id FROM messages") == aged.message_delivery
    assert await db.fetchval("SELECT count(*) FROM quarantine") == 1
    forwards = await db.fetch("SELECT dedup_key FROM forwards ORDER BY dedup_key")
    assert [bytes(r["dedup_key"]) for r in forwards] == [b"f3", b"f4"]
    events = await db.fetch("SELECT dedup_key FROM events ORDER BY dedup_key")
    assert [bytes(r["dedup_key"]) for r in events] == [b"e2", b"e3"]
    media = await db.fetch("SELECT media_id FROM media ORDER BY media_id")
    assert [r["media_id"] for r in media] == ["m-pending", "m-short-young", "m-young"]
    pairs = await db.fetch("SELECT recipient FROM pair_pacing ORDER BY recipient")
    assert [r["recipient"] for r in pairs] == ["16505550002", "16505550003"]


async def test_retention_follows_the_configured_days(
    db: asyncpg.Connection, settings: Settings
) -> None:
    nine_days = await add_delivery(db, "processed", 9 * DAY)
    async with pool_of(settings.database_url or "") as pool:
        longer = await run_retention(pool, replace(settings, raw_retention_days=10))
        assert longer.delivery_bodies == 0
        shorter = await run_retention(pool, replace(settings, raw_retention_days=8.5))
        assert shorter.delivery_bodies == 1
        with pytest.raises(ValueError):
            await run_retention(pool, replace(settings, raw_retention_days=-1))
    assert await db.fetchval("SELECT body FROM deliveries WHERE id = $1", nine_days) == b""
    assert RETENTION_INTERVAL_SECONDS > 0


async def test_concurrent_retention_passes_share_the_work_without_harm(
    db: asyncpg.Connection, settings: Settings
) -> None:
    for _ in range(60):
        await add_delivery(db, "processed", 8 * DAY)
    pending = await add_delivery(db, "pending", 8 * DAY)
    async with (
        pool_of(settings.database_url or "") as one,
        pool_of(settings.database_url or "") as two,
    ):
        reports = await asyncio.gather(
            *(run_retention(pool, settings, batch_size=7) for pool in (one, two, one, two))
        )
        # Whatever interleaving happened, every body is cleared exactly once.
        assert sum(r.delivery_bodies for r in reports) == 60
        left = await run_retention(one, settings)
        assert left.total == 0
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE body = ''") == 60
    assert await db.fetchval("SELECT state FROM deliveries WHERE id = $1", pending) == "pending"
    assert await db.fetchval("SELECT body FROM deliveries WHERE id = $1", pending) != b""


async def test_retention_stops_while_another_process_holds_the_lock(
    db: asyncpg.Connection, settings: Settings
) -> None:
    old = await add_delivery(db, "processed", 8 * DAY)
    async with pool_of(settings.database_url or "") as pool:
        async with db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock(hashtext('wa_cloud.retention'))")
            busy = await run_retention(pool, settings)
        assert busy.busy and busy.total == 0
        assert await db.fetchval("SELECT body FROM deliveries WHERE id = $1", old) != b""
        free = await run_retention(pool, settings)
    assert free.delivery_bodies == 1 and not free.busy


async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "wa_cloud.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_retention_command_runs_one_pass_and_prints_the_report(
    db: asyncpg.Connection, settings: Settings
) -> None:
    await add_delivery(db, "processed", 3 * DAY)
    done = await cli("retention", env=process_env(settings, WA_RAW_RETENTION_DAYS="2"))
    assert done.returncode == 0, done.stderr
    assert "1 delivery bodies cleared" in done.stdout and "2 days" in done.stdout
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE body = ''") == 1


# -- deleting a tenant ------------------------------------------------------------------------

TENANT_TABLES = (
    "numbers",
    "contacts",
    "messages",
    "statuses",
    "events",
    "media",
    "forwards",
    "tenant_webhooks",
    "apps",
    "api_keys",
    "audit_log",
    "bots",
    "replies",
    "credit_ledger",
    "token_usage",
    "broadcasts",
    "opt_outs",
    "tool_calls",
    "bot_files",
    "follow_ups",
)


async def seed_everything(
    db: asyncpg.Connection, tenant_id: uuid.UUID, number: str, waba: str, box: SecretBox
) -> None:
    """One row of every kind the tenant can own, sealed secrets included."""
    await add_number(db, tenant_id, number, waba, box)
    await add_number(db, tenant_id, number + "9", WABA_SHARED, box)
    contact = await db.fetchval(
        "INSERT INTO contacts (tenant_id, phone_number_id, wa_id) VALUES ($1, $2, $3) RETURNING id",
        tenant_id,
        number,
        "1650555" + number[-4:],
    )
    message = await db.fetchval(
        "INSERT INTO messages (tenant_id, phone_number_id, contact_id, direction, type, payload,"
        " status, wamid) VALUES ($1, $2, $3, 'in', 'image', '{}', 'received', $4) RETURNING id",
        tenant_id,
        number,
        contact,
        "wamid." + number,
    )
    await db.execute(
        "INSERT INTO statuses (tenant_id, phone_number_id, wamid, status, payload)"
        " VALUES ($1, $2, $3, 'sent', '{}')",
        tenant_id,
        number,
        "wamid.out." + number,
    )
    await db.execute(
        "INSERT INTO events (tenant_id, field, kind, payload, dedup_key)"
        " VALUES ($1, 'account_update', 'x', '{}', $2)",
        tenant_id,
        number.encode(),
    )
    await db.execute(
        "INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, state, content)"
        " VALUES ($1, $2, $3, $4, 'stored', 'bytes')",
        tenant_id,
        number,
        "media-" + number,
        message,
    )
    await db.execute(
        "INSERT INTO forwards (tenant_id, event, payload, dedup_key)"
        " VALUES ($1, 'message.received', '{}', 'k')",
        tenant_id,
    )
    await db.execute(
        "INSERT INTO tenant_webhooks (tenant_id, url, events, secret_enc)"
        " VALUES ($1, 'https://hooks.example/x', '{message.received}', $2)",
        tenant_id,
        box.seal("whsec", context=sealed.WEBHOOK_SECRET.context(str(tenant_id))),
    )
    app_id = "20000000" + number[-7:]
    await add_app(db, tenant_id, app_id, box, box)
    await db.execute(
        "INSERT INTO templates (waba_id, name, language, status, components)"
        " VALUES ($1, 'hello', 'en_US', 'APPROVED', '[]'), ($2, 'hello_' || $1, 'en_US',"
        " 'APPROVED', '[]')",
        waba,
        WABA_SHARED,
    )
    await db.execute(
        "INSERT INTO pair_pacing (phone_number_id, recipient, tat) VALUES ($1, 'r', now())",
        number,
    )
    await db.execute(
        "INSERT INTO bots (phone_number_id, tenant_id, instructions, api_key_enc,"
        " tool_secrets_enc) VALUES ($1, $2, 'Be kind.', $3, $4)",
        number,
        tenant_id,
        box.seal("sk-tenant", context=sealed.BOT_API_KEY.context(number)),
        box.seal(
            '{"stock": {"Authorization": "Bearer s"}}',
            context=sealed.BOT_TOOL_SECRETS.context(number),
        ),
    )
    await db.execute(
        "INSERT INTO tool_calls (tenant_id, phone_number_id, tool, arguments, duration_ms)"
        " VALUES ($1, $2, 'stock', '{}', 3)",
        tenant_id,
        number,
    )
    await db.execute(
        "INSERT INTO replies (tenant_id, phone_number_id, contact_id, due_at)"
        " VALUES ($1, $2, $3, now())",
        tenant_id,
        number,
        contact,
    )
    await db.execute(
        "INSERT INTO credit_ledger (tenant_id, amount, balance_before, balance_after, reason)"
        " VALUES ($1, 5, 0, 5, 'gift')",
        tenant_id,
    )
    await db.execute(
        "INSERT INTO token_usage (tenant_id, phone_number_id, model, feature, day)"
        " VALUES ($1, $2, 'echo', 'reply', current_date)",
        tenant_id,
        number,
    )
    broadcast = await db.fetchval(
        "INSERT INTO broadcasts (tenant_id, phone_number_id, name, template, category, estimate)"
        " VALUES ($1, $2, 'Spring', $3, 'MARKETING', $4) RETURNING id",
        tenant_id,
        number,
        {"name": "hello", "language": "en_US"},
        {"messages": 1, "currency": "USD", "amount": 0.05},
    )
    # The campaign's message and its recipient point at each other.
    await db.execute("UPDATE messages SET broadcast_id = $1 WHERE id = $2", broadcast, message)
    await db.execute(
        "INSERT INTO broadcast_recipients (broadcast_id, recipient, line, state, message_id)"
        " VALUES ($1, $2, 1, 'queued', $3)",
        broadcast,
        "1650555" + number[-4:],
        message,
    )
    await db.execute(
        "INSERT INTO opt_outs (phone_number_id, recipient, tenant_id, source, detail)"
        " VALUES ($1, $2, $3, 'keyword', 'STOP')",
        number,
        "1650555" + number[-4:],
        tenant_id,
    )
    await db.execute(
        "INSERT INTO bot_files (tenant_id, phone_number_id, title, kind, mime_type, filename,"
        " size, sha256, content) VALUES ($1, $2, 'Menu', 'document', 'application/pdf',"
        " 'menu.pdf', 4, 'x', '\\x25504446')",
        tenant_id,
        number,
    )
    await db.execute(
        "INSERT INTO follow_ups (tenant_id, phone_number_id, contact_id, kind, due_at, text)"
        " VALUES ($1, $2, $3, 'reminder', now() + interval '1 hour', 'See you')",
        tenant_id,
        number,
        contact,
    )


async def owned(db: asyncpg.Connection, tenant_id: uuid.UUID) -> dict[str, int]:
    counts = {
        table: await db.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant_id)
        for table in TENANT_TABLES
    }
    counts["pair_pacing"] = await db.fetchval(
        "SELECT count(*) FROM pair_pacing p JOIN numbers n USING (phone_number_id)"
        " WHERE n.tenant_id = $1",
        tenant_id,
    )
    counts["broadcast_recipients"] = await db.fetchval(
        "SELECT count(*) FROM broadcast_recipients r JOIN broadcasts b ON b.id = r.broadcast_id"
        " WHERE b.tenant_id = $1",
        tenant_id,
    )
    return counts


async def test_delete_tenant_removes_all_its_rows_and_secrets_and_nothing_else(
    web: Running, db: asyncpg.Connection
) -> None:
    box = SecretBox(web.settings.secret_key or "")
    gone, kept = await web.create_tenant("Gone Co"), await web.create_tenant("Kept Co")
    gone_id, kept_id = uuid.UUID(gone["id"]), uuid.UUID(kept["id"])
    await seed_everything(db, gone_id, NUMBER_1, WABA_1, box)
    await seed_everything(db, kept_id, NUMBER_2, WABA_2, box)
    delivery = await add_delivery(db, "processed", timedelta(0))
    kept_before = await owned(db, kept_id)
    assert all(kept_before.values()), kept_before
    path = f"/v1/admin/tenants/{gone_id}"

    active = await web.client.delete(path, headers=web.admin())
    assert active.status_code == 409
    assert active.json()["error"]["code"] == "tenant_active"
    assert all((await owned(db, gone_id)).values())
    assert (await web.client.delete(path)).status_code == 401
    tenant_key = {"authorization": f"Bearer {gone['api_key']}"}
    assert (await web.client.delete(path, headers=tenant_key)).status_code == 401

    off = await web.client.patch(path, json={"active": False}, headers=web.admin())
    assert off.status_code == 200
    deleted = await web.client.delete(path, headers=web.admin())
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {
        "id": str(gone_id),
        "deleted": {
            "forwards": 1,
            "webhooks": 1,
            "media": 1,
            "statuses": 1,
            "messages": 1,
            "contacts": 1,
            "events": 1,
            "templates": 1,  # its own WABA's; the shared WABA's stay for the other tenant
            "numbers": 2,
            "apps": 1,
            "api_keys": 1,
            # tenant.created, tenant.updated (the deactivation)
            "audit_events": 2,
        },
    }
    assert set((await owned(db, gone_id)).values()) == {0}
    assert await db.fetchval("SELECT count(*) FROM tenants WHERE id = $1", gone_id) == 0
    assert await owned(db, kept_id) == kept_before
    templates = await db.fetch("SELECT waba_id, name FROM templates ORDER BY waba_id, name")
    assert [(r["waba_id"], r["name"]) for r in templates] == [
        (WABA_2, "hello"),
        (WABA_SHARED, "hello_" + WABA_1),
        (WABA_SHARED, "hello_" + WABA_2),
    ]
    # Sealed secrets: only the other tenant's are left anywhere.
    for column in sealed.ALL:
        left = await db.fetchval(
            f"SELECT count(*) FROM {column.table} WHERE {column.column} IS NOT NULL"
        )
        assert left == (2 if column.table == "numbers" else 1), column
    # Raw deliveries are not per tenant: retention clears them.
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE id = $1", delivery) == 1

    record = await db.fetchrow(
        "SELECT tenant_id, actor, severity, detail FROM audit_log WHERE action = 'tenant.deleted'"
    )
    assert record["tenant_id"] is None and record["actor"] == "admin"
    assert record["severity"] == "warning"
    assert record["detail"]["tenant_id"] == str(gone_id)
    assert "app-secret" not in str(record["detail"]) and "EAAG" not in str(record["detail"])

    assert (await web.client.get(path, headers=web.admin())).status_code == 404
    again = await web.client.delete(path, headers=web.admin())
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    assert (await web.client.get("/v1/numbers", headers=tenant_key)).status_code == 401
    unknown = await web.client.delete(f"/v1/admin/tenants/{uuid.uuid4()}", headers=web.admin())
    assert unknown.status_code == 404
    malformed = await web.client.delete("/v1/admin/tenants/not-a-uuid", headers=web.admin())
    assert malformed.status_code == 404
    kept_key = {"authorization": f"Bearer {kept['api_key']}"}
    assert (await web.client.get("/v1/numbers", headers=kept_key)).status_code == 200


# -- status links: revocation and deactivated tenants -----------------------------------------


def _link_record(caplog: pytest.LogCaptureFixture) -> str:
    records = [r for r in caplog.records if getattr(r, "link", None)]
    link: str = records[-1].link  # type: ignore[attr-defined]
    caplog.clear()
    return link


async def test_a_new_invitation_revokes_every_older_link(
    settings: Settings, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wa_cloud")
    async with running(settings, dev=True) as app:
        seeded = await seed(app, db, name="Revoked Co")
        tenant_id = uuid.UUID(seeded.tenant_id)
        first = links.make_link(app.settings, tenant_id)  # generation 0: before any invitation
        assert (await app.client.get(first)).status_code == 200
        invite = f"/v1/admin/tenants/{tenant_id}/invite"

        assert (await app.client.post(invite, headers=app.admin())).status_code == 202
        second = _link_record(caplog)
        assert LINK.fullmatch(second)
        replaced = await app.client.get(first)
        assert replaced.status_code == 410
        assert replaced.headers["content-type"].startswith("text/html")
        assert replaced.headers["cache-control"] == "no-store"
        assert "has been replaced" in replaced.text and "Revoked Co" not in replaced.text
        assert (await app.client.get(second)).status_code == 200

        assert (await app.client.post(invite, headers=app.admin())).status_code == 202
        third = _link_record(caplog)
        assert (await app.client.get(second)).status_code == 410
        assert (await app.client.get(first)).status_code == 410
        page = await app.client.get(third)
        assert page.status_code == 200 and "Revoked Co" in page.text
    assert await db.fetchval("SELECT link_generation FROM tenants WHERE id = $1", tenant_id) == 2
    details = await db.fetch(
        "SELECT detail FROM audit_log WHERE action = 'tenant.invited' ORDER BY id"
    )
    assert [d["detail"]["link_generation"] for d in details] == [1, 2]


def test_links_signed_before_generations_count_as_the_first() -> None:
    settings, tenant_id = Settings(secret_key="master-key-for-links"), uuid.uuid4()
    legacy = links.signed_serializer(settings, lambda: datetime.now(UTC).timestamp()).dumps(
        str(tenant_id)
    )
    assert links.open_link(settings, str(legacy)) == links.StatusLink(tenant_id, 0)
    fresh = links.make_token(settings, tenant_id, generation=3)
    assert links.open_link(settings, fresh) == links.StatusLink(tenant_id, 3)
    link = links.open_link(settings, fresh)
    assert link is not None and link.tenant_id == tenant_id
    serializer = links.signed_serializer(settings, lambda: datetime.now(UTC).timestamp())
    for payload in ([str(tenant_id), -1], [str(tenant_id), "1"], [str(tenant_id), True], [1, 2]):
        assert links.open_link(settings, str(serializer.dumps(payload))) is None, payload


async def test_a_deactivated_tenant_gets_a_friendly_refusal_page(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with running(settings) as app:
        seeded = await seed(app, db, name="Paused Co")
        link = links.make_link(app.settings, uuid.UUID(seeded.tenant_id))
        path = f"/v1/admin/tenants/{seeded.tenant_id}"
        await app.client.patch(path, json={"active": False}, headers=app.admin())
        refused = await app.client.get(link)
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("text/html")
        assert refused.headers["cache-control"] == "no-store"
        assert "This account is paused" in refused.text
        # Nothing of the tenant's: not its name, not its numbers.
        assert "Paused Co" not in refused.text and "15550783881" not in refused.text
        assert "Traceback" not in refused.text
        await app.client.patch(path, json={"active": True}, headers=app.admin())
        assert (await app.client.get(link)).status_code == 200


# -- invitation mail --------------------------------------------------------------------------


async def test_production_without_smtp_never_logs_the_link(
    settings: Settings, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert not settings.dev
    async with running(settings) as app:
        seeded = await seed(app, db)
        earlier = links.make_link(app.settings, uuid.UUID(seeded.tenant_id))
        response = await app.client.post(
            f"/v1/admin/tenants/{seeded.tenant_id}/invite", headers=app.admin()
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "mail_not_configured"
        # Revocation does not depend on mail: the older link is dead either way.
        assert (await app.client.get(earlier)).status_code == 410
    # Ours, not the test client's (httpx logs the URLs this test itself opened).
    ours = [r for r in caplog.records if r.name.startswith("wa_cloud")]
    logs = rendered_logs(ours)
    assert "/t/" not in logs and not LINK.search(logs)
    assert not [r for r in ours if hasattr(r, "link")]
    [record] = [r for r in ours if "not configured" in r.getMessage()]
    assert record.tenant_id == seeded.tenant_id  # type: ignore[attr-defined]
    failed = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'tenant.invite_failed'"
    )
    assert failed == 1


# A fake SMTP server that speaks STARTTLS (or TLS from the first byte) -----------------------


@dataclass
class TlsSmtp:
    """EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, QUIT; remembers whether AUTH came over
    TLS. `offer_starttls=False` is a server that cannot encrypt."""

    context: ssl.SSLContext | None
    offer_starttls: bool = True
    auths: list[tuple[str, bool]] = field(default_factory=list)  # (user, over TLS)
    received: list[bytes] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        encrypted = writer.get_extra_info("ssl_object") is not None

        async def reply(*lines: str) -> None:
            writer.write("".join(line + "\r\n" for line in lines).encode())
            await writer.drain()

        try:
            await reply("220 tls.test ESMTP")
            while line := (await reader.readline()).decode().rstrip("\r\n"):
                verb, _, argument = line.partition(" ")
                verb = verb.upper()
                self.commands.append(verb)
                if verb == "EHLO":
                    starttls = self.offer_starttls and not encrypted and self.context
                    extensions = ["250-STARTTLS"] if starttls else []
                    await reply("250-tls.test", *extensions, "250 AUTH PLAIN")
                elif verb == "STARTTLS" and self.context and not encrypted:
                    await reply("220 2.0.0 Ready to start TLS")
                    await writer.start_tls(self.context)
                    encrypted = True
                elif verb == "AUTH":
                    _, user, _password = base64.b64decode(argument.split(" ")[1]).split(b"\0")
                    self.auths.append((user.decode(), encrypted))
                    await reply("235 2.7.0 Authentication successful")
                elif verb in ("MAIL", "RCPT"):
                    await reply("250 2.1.0 Ok")
                elif verb == "DATA":
                    await reply("354 go ahead")
                    data = b""
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        data += chunk
                    self.received.append(data)
                    await reply("250 2.0.0 queued")
                elif verb == "QUIT":
                    await reply("221 2.0.0 Bye")
                    break
                else:
                    await reply("502 5.5.2 not here")
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


@dataclass(frozen=True)
class Certificate:
    server: ssl.SSLContext
    ca_file: Path


def loopback_certificate(directory: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1, trusted by the client through SSL_CERT_FILE."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wa-cloud test SMTP")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return Certificate(server, cert_file)


@contextlib.asynccontextmanager
async def tls_smtp(fake: TlsSmtp, *, implicit: bool = False) -> AsyncIterator[int]:
    server = await asyncio.start_server(
        fake.session, "127.0.0.1", 0, ssl=fake.context if implicit else None
    )
    async with server:
        yield server.sockets[0].getsockname()[1]


SMTP_PASSWORD = "smtp-pass-never-in-clear"


async def test_smtp_url_without_starttls_refuses_to_authenticate_in_clear(
    settings: Settings, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = TlsSmtp(context=None, offer_starttls=False)
    async with (
        tls_smtp(fake) as port,
        running(settings, smtp_url=f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{port}") as app,
    ):
        seeded = await seed(app, db)
        response = await app.client.post(
            f"/v1/admin/tenants/{seeded.tenant_id}/invite", headers=app.admin()
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "mail_unavailable"
    assert "STARTTLS" in response.json()["error"]["message"]
    # Neither the password nor the link went over the wire: no AUTH, no MAIL, no DATA.
    assert fake.auths == [] and fake.received == []
    assert "AUTH" not in fake.commands and "MAIL" not in fake.commands
    logs = rendered_logs(r for r in caplog.records if r.name.startswith("wa_cloud"))
    assert "offers no STARTTLS" in logs
    assert SMTP_PASSWORD not in logs and "/t/" not in logs


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
async def test_smtp_authenticates_only_over_tls(
    settings: Settings,
    db: asyncpg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    certificate = loopback_certificate(tmp_path)
    # The client's default context trusts our certificate and nothing else in this test.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.ca_file))
    fake = TlsSmtp(context=certificate.server)
    async with (
        tls_smtp(fake, implicit=scheme == "smtps") as port,
        running(settings, smtp_url=f"{scheme}://mailer:{SMTP_PASSWORD}@127.0.0.1:{port}") as app,
    ):
        seeded = await seed(app, db)
        response = await app.client.post(
            f"/v1/admin/tenants/{seeded.tenant_id}/invite", headers=app.admin()
        )
        assert response.status_code == 202, response.text
    assert fake.auths == [("mailer", True)]
    assert len(fake.received) == 1 and b"/t/" in fake.received[0]
    if scheme == "smtp":
        assert fake.commands.index("STARTTLS") < fake.commands.index("AUTH")


# -- rotate-key -------------------------------------------------------------------------------


async def handshake(app: Running, app_id: str) -> tuple[int, str]:
    response = await app.client.get(
        f"/webhook/apps/{app_id}",
        params={"hub.mode": "subscribe", "hub.verify_token": "verify", "hub.challenge": "42"},
    )
    return response.status_code, response.text


async def test_rotate_key_checks_what_it_resealed_and_names_what_it_cannot_open(
    settings: Settings, db: asyncpg.Connection
) -> None:
    old_key, new_key = settings.secret_key or "", "n" * 40
    old_box, new_box = SecretBox(old_key), SecretBox(new_key)
    tenant_id = await new_tenant(db)
    await add_number(db, tenant_id, NUMBER_1, WABA_1, old_box)
    # Sealed with a key nobody was given any more: it can be neither re-sealed nor checked.
    lost_app = "2000000000000009"
    lost = SecretBox("a-key-that-was-lost-long-ago-000000")
    await add_app(db, tenant_id, lost_app, lost, old_box, secret="lost-secret-value")
    env = process_env(settings, WA_SECRET_KEY=new_key, WA_PREVIOUS_SECRET_KEYS=old_key)
    done = await cli("rotate-key", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "numbers.access_token_enc: 1 re-sealed" in done.stdout
    assert "apps.verify_token_enc: 1 re-sealed" in done.stdout
    assert "apps.app_secret_enc: 0 re-sealed" in done.stdout
    assert "checked 4: 1 could not be opened" in done.stderr
    assert f"apps.app_secret_enc app_id={lost_app}" in done.stderr
    for secret in ("lost-secret-value", "EAAG-", "verify", old_key, new_key):
        assert secret not in output.replace("verify_token_enc", ""), secret

    # Everything else was re-sealed and now opens with the new key alone.
    token = await db.fetchval("SELECT access_token_enc FROM numbers")
    assert new_box.open(token, context=sealed.NUMBER_TOKEN.context(NUMBER_1)) == "EAAG-" + NUMBER_1
    unchanged = await db.fetchval("SELECT app_secret_enc FROM apps")
    assert lost.open(unchanged, context=sealed.APP_SECRET.context(lost_app)) == "lost-secret-value"

    # Once the lost value is replaced, the same command reports success.
    await db.execute(
        "UPDATE apps SET app_secret_enc = $1",
        new_box.seal("fresh", context=sealed.APP_SECRET.context(lost_app)),
    )
    again = await cli("rotate-key", env=env)
    assert again.returncode == 0, again.stderr
    assert "checked 4: every secret is now sealed" in again.stdout


async def test_processes_with_the_old_key_listed_keep_working_through_a_rotation(
    settings: Settings, db: asyncpg.Connection
) -> None:
    old_key, new_key = settings.secret_key or "", "m" * 40
    old_box = SecretBox(old_key)
    tenant_id = await new_tenant(db)
    app_id = "2000000000000007"
    await add_app(db, tenant_id, app_id, old_box, old_box, secret="s3cret")
    restarted = replace(settings, secret_key=new_key, previous_secret_keys=(old_key,))
    async with serve(restarted, run_worker=False) as web:
        assert await handshake(web, app_id) == (200, "42")  # before: sealed with the old key
        report = await rotate(db, SecretBox(new_key, (old_key,)))
        assert report.ok and report.resealed["apps.verify_token_enc"] == 1
        assert await handshake(web, app_id) == (200, "42")  # after: the same process, no restart
    # Once rotated, the old key can go: a process with the new key alone opens everything.
    async with serve(replace(settings, secret_key=new_key), run_worker=False) as web:
        assert await handshake(web, app_id) == (200, "42")
