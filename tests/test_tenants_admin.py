"""Operator controls: deactivation, API key rotation and revocation, the audit log."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from tests.conftest import NUMBER_A, Meta, Running, corpus, wait_idle


async def test_deactivated_tenant_keeps_inbound_but_sends_and_changes_nothing(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await meta.customer_writes("before")
    queued = await meta.app.client.post(
        "/v1/messages",
        json={"from": NUMBER_A, "to": "16505551234", "type": "text", "text": {"body": "x"}},
        headers=meta.tenant(),
    )
    assert queued.status_code == 202
    await meta.wait_status(queued.json()["id"], "read")

    off = await meta.app.client.patch(
        f"/v1/admin/tenants/{meta.tenant_id}", json={"active": False}, headers=meta.app.admin()
    )
    assert off.status_code == 200 and off.json()["active"] is False
    # Inbound is still stored and indexed.
    await meta.customer_writes("while inactive")
    # Changes and sends are refused; reads still work.
    send = await meta.send(to="16505551234", type="text", text={"body": "y"})
    assert send.status_code == 403
    assert send.json()["error"]["code"] == "tenant_inactive"
    patch = await meta.app.client.patch(
        f"/v1/numbers/{NUMBER_A}", json={"bot_enabled": False}, headers=meta.tenant()
    )
    assert patch.json()["error"]["code"] == "tenant_inactive"
    assert (await meta.app.client.get("/v1/numbers", headers=meta.tenant())).status_code == 200
    # A message already queued for it stays queued: nothing is sent for an inactive tenant.
    tenant_id = meta.tenant_id
    await db.execute(
        "INSERT INTO messages (tenant_id, phone_number_id, direction, type, payload, request,"
        " recipient, status, run_after)"
        " VALUES ($1::uuid, $2, 'out', 'text', '{}', $3::jsonb, '16505551234', 'queued', now())",
        tenant_id,
        NUMBER_A,
        {
            "messaging_product": "whatsapp",
            "to": "16505551234",
            "type": "text",
            "text": {"body": "z"},
        },
    )
    await db.execute("SELECT pg_notify('wa_outbox', 'x')")
    await asyncio.sleep(1.0)
    status = await db.fetchval("SELECT status FROM messages WHERE request->'text'->>'body' = 'z'")
    assert status == "queued"
    assert len(await meta.sent_bodies()) == 1


async def test_keys_rotate_and_revoke(app: Running, db: asyncpg.Connection) -> None:
    tenant = await app.create_tenant()
    first = {"authorization": f"Bearer {tenant['api_key']}"}
    created = await app.client.post(f"/v1/admin/tenants/{tenant['id']}/keys", headers=app.admin())
    assert created.status_code == 201
    second_key = created.json()["api_key"]
    second = {"authorization": f"Bearer {second_key}"}
    assert (await app.client.get("/v1/numbers", headers=first)).status_code == 200
    assert (await app.client.get("/v1/numbers", headers=second)).status_code == 200

    listed = await app.client.get(f"/v1/admin/tenants/{tenant['id']}/keys", headers=app.admin())
    keys = listed.json()["data"]
    assert len(keys) == 2
    assert tenant["api_key"] not in listed.text and second_key not in listed.text
    first_id = next(k["id"] for k in keys if tenant["api_key"].startswith(k["prefix"]))
    revoked = await app.client.delete(
        f"/v1/admin/tenants/{tenant['id']}/keys/{first_id}", headers=app.admin()
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused = await app.client.get("/v1/numbers", headers=first)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert (await app.client.get("/v1/numbers", headers=second)).status_code == 200
    other = await app.create_tenant("Other")
    cross = await app.client.delete(
        f"/v1/admin/tenants/{other['id']}/keys/{first_id}", headers=app.admin()
    )
    assert cross.status_code == 404
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == 2


async def test_audit_log_records_changes_and_tenants_see_only_theirs(
    app: Running, db: asyncpg.Connection
) -> None:
    a = await app.create_tenant("A")
    b = await app.create_tenant("B")
    assert (await app.add_number(a["api_key"], NUMBER_A)).status_code == 201
    await app.client.patch(
        f"/v1/admin/tenants/{b['id']}", json={"active": False}, headers=app.admin()
    )
    events = await app.client.get("/v1/admin/events", headers=app.admin())
    actions = [(e["action"], e["tenant_id"]) for e in events.json()["data"]]
    assert ("tenant.updated", b["id"]) in actions
    assert ("number.registered", a["id"]) in actions
    assert ("tenant.created", a["id"]) in actions
    deactivated = next(e for e in events.json()["data"] if e["action"] == "tenant.updated")
    assert deactivated["severity"] == "warning"
    assert deactivated["detail"] == {"active": False}
    filtered = await app.client.get(
        "/v1/admin/events", params={"tenant_id": a["id"]}, headers=app.admin()
    )
    assert {e["tenant_id"] for e in filtered.json()["data"]} == {a["id"]}
    own = await app.client.get("/v1/events", headers={"authorization": f"Bearer {a['api_key']}"})
    assert own.status_code == 200
    assert {e["tenant_id"] for e in own.json()["data"]} == {a["id"]}
    assert "EAAG" not in own.text and "EAAG" not in events.text  # no token in any detail


async def test_inbound_for_a_deactivated_tenant_is_still_indexed(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    await app.client.patch(
        f"/v1/admin/tenants/{tenant['id']}", json={"active": False}, headers=app.admin()
    )
    assert (await app.post_webhook(corpus("messages/text.json"))).status_code == 200
    await wait_idle(db)
    assert await db.fetchval("SELECT count(*) FROM messages") == 1
