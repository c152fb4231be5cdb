"""The operator's console pages (console/operator.py): tenants, invitations, activation,
credits, every number, the event log, usage and the AI defaults, through the forms."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import NUMBER_A, NUMBER_B, Running
from tests.console_client import ConsoleUser, nonce_of

pytestmark = pytest.mark.asyncio


def field_value(page: str, field_id: str) -> str:
    found = re.search(rf'id="{field_id}"[^>]* value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def operator(app: Running) -> ConsoleUser:
    return await ConsoleUser(app.base_url).sign_in(app.settings.admin_token or "")


async def test_the_operator_creates_a_tenant_and_sees_its_key_once_and_the_invitation(
    app: Running, db: asyncpg.Connection
) -> None:
    async with await operator(app) as user:
        listing = await user.get("/console/tenants")
        assert listing.status_code == 200 and "Create a tenant" in listing.text

        created = await user.post(
            "/console/tenants", {"name": "Panadería Sol", "email": "owner@sol.test"}
        )
        assert created.status_code == 201, created.text
        assert "shown this once" in created.text
        key = field_value(created.text, "api-key")
        row = await db.fetchrow("SELECT id, name, email, active FROM tenants")
        assert (row["name"], row["email"], row["active"]) == (
            "Panadería Sol",
            "owner@sol.test",
            True,
        )
        assert str(row["id"]) in created.text
        # The key works against the API, and the page never shows it again.
        numbers = await app.client.get("/v1/numbers", headers={"authorization": f"Bearer {key}"})
        assert numbers.status_code == 200 and numbers.json()["data"] == []
        again = await user.get(f"/console/tenants/{row['id']}")
        assert again.status_code == 200 and key not in again.text
        assert key[:8] in again.text  # its prefix, in the keys table
        listed = await user.get("/console/tenants")
        assert "Panadería Sol" in listed.text and f"/console/tenants/{row['id']}" in listed.text

        # No mail server here: the page says so and shows the new links to pass on.
        invited = await user.post(f"/console/tenants/{row['id']}/invite", {"email": ""})
        assert invited.status_code == 200, invited.text
        assert "No mail server configured" in invited.text
        assert "owner@sol.test" in invited.text
        status_link = field_value(invited.text, "status-link")
        console_link = field_value(invited.text, "console-link")
        public = app.settings.base_url
        assert status_link.startswith(f"{public}/t/")
        assert console_link.startswith(f"{public}/console/link/")
        # Two tokens, two salts: the status page's link opens no console session.
        assert console_link.rsplit("/", 1)[1] != status_link.rsplit("/", 1)[1]
        audit = await db.fetch(
            "SELECT action, severity FROM audit_log WHERE tenant_id = $1 AND action LIKE"
            " 'tenant.invite%'",
            row["id"],
        )
        assert [(a["action"], a["severity"]) for a in audit] == [
            ("tenant.invite_failed", "warning")
        ]
        assert await db.fetchval("SELECT link_generation FROM tenants") == 1
        assert (await app.client.get(status_link.removeprefix(public))).status_code == 200

        refused = await user.post(f"/console/tenants/{row['id']}/invite", {"email": "nope"})
        assert refused.status_code == 422
        assert "not an email address" in refused.text

    # The console link of the invitation signs the business in.
    async with httpx.AsyncClient(base_url=app.base_url) as browser:
        path = console_link.removeprefix(public)
        form = await browser.get(path)
        signed = await browser.post(
            path, data={"nonce": nonce_of(form.text)}, headers={"origin": app.base_url}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/console/inbox"


async def test_a_bad_form_keeps_what_was_typed(app: Running, db: asyncpg.Connection) -> None:
    async with await operator(app) as user:
        refused = await user.post("/console/tenants", {"name": "  ", "email": "a@b.test"})
        assert refused.status_code == 422
        assert "'name' is required." in html.unescape(refused.text)
        assert 'value="a@b.test"' in refused.text
    assert await db.fetchval("SELECT count(*) FROM tenants") == 0


async def test_deactivation_and_credits(app: Running, db: asyncpg.Connection) -> None:
    created = await app.create_tenant("Paying Co")
    tenant_id = created["id"]
    key = {"authorization": f"Bearer {created['api_key']}"}
    async with await operator(app) as user:
        off = await user.post(f"/console/tenants/{tenant_id}/active", {"active": "false"})
        assert off.status_code == 303
        assert off.headers["location"] == f"/console/tenants/{tenant_id}?notice=deactivated"
        shown = await user.get(off.headers["location"])
        assert "The tenant is deactivated" in shown.text and "Activate" in shown.text
        assert await db.fetchval("SELECT active FROM tenants") is False
        change = await app.client.post("/v1/numbers", json={}, headers=key)
        assert change.status_code == 403
        assert change.json()["error"]["code"] == "tenant_inactive"
        updated = await db.fetchrow(
            "SELECT actor, severity, detail FROM audit_log WHERE action = 'tenant.updated'"
        )
        assert dict(updated) == {
            "actor": "admin",
            "severity": "warning",
            "detail": {"active": False},
        }
        on = await user.post(f"/console/tenants/{tenant_id}/active", {"active": "true"})
        assert on.status_code == 303 and await db.fetchval("SELECT active FROM tenants") is True

        added = await user.post(
            f"/console/tenants/{tenant_id}/credits", {"amount": "250", "reason": "invoice 7"}
        )
        assert added.status_code == 303
        page = await user.get(added.headers["location"])
        assert "The credits were moved" in page.text
        assert "Balance: <strong>250</strong>" in page.text
        assert re.search(r"\+250</td>\s*<td class=\"num\">250</td>\s*<td>invoice 7</td>", page.text)
        ledger = await db.fetch("SELECT amount, balance_after, reason FROM credit_ledger")
        assert [tuple(r) for r in ledger] == [(250, 250, "invoice 7")]
        listed = await user.get("/console/tenants")
        assert re.search(r"Paying Co</a></td>.*?<td class=\"num\">250</td>", listed.text, re.S)

        for amount, message in (
            ("-251", "The tenant has 250 credits: 251 cannot be taken."),
            ("ten", "&#39;amount&#39; must be a whole number"),
            ("0", "&#39;amount&#39; must not be 0."),
        ):
            refused = await user.post(
                f"/console/tenants/{tenant_id}/credits", {"amount": amount, "reason": "x"}
            )
            assert refused.status_code == 422, amount
            assert message in refused.text, amount
        assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 1
        missing = await user.post(
            f"/console/tenants/{uuid.uuid4()}/credits", {"amount": "5", "reason": "x"}
        )
        assert missing.status_code == 404


async def test_every_number_with_its_bot_switch(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    await db.execute(
        "UPDATE numbers SET quality_rating = 'YELLOW', messaging_limit = 'TIER_1K'"
        " WHERE phone_number_id = $1",
        NUMBER_A,
    )
    async with await operator(app) as user:
        page = await user.get("/console/numbers")
        assert page.status_code == 200
        assert NUMBER_A in page.text and NUMBER_B in page.text and "Corpus Co" in page.text
        assert "TIER_1K" in page.text and ">yellow<" in page.text and "Cloud API" in page.text
        fragment = await user.get("/console/numbers", headers={"x-console-fragment": "1"})
        assert fragment.status_code == 200 and "<html" not in fragment.text
        assert NUMBER_A in fragment.text

        before = await db.fetchval(
            "SELECT bot_enabled FROM numbers WHERE phone_number_id = $1", NUMBER_A
        )
        back = f"/console/tenants/{tenant['id']}"
        switched = await user.post(
            f"/console/numbers/{NUMBER_A}/bot",
            {"bot_enabled": "false" if before else "true", "next": back},
        )
        assert switched.status_code == 303 and switched.headers["location"] == back
        assert await db.fetchval(
            "SELECT bot_enabled FROM numbers WHERE phone_number_id = $1", NUMBER_A
        ) is (not before)
        audited = await db.fetchrow(
            "SELECT tenant_id, actor, detail FROM audit_log WHERE action = 'number.updated'"
        )
        assert str(audited["tenant_id"]) == tenant["id"] and audited["actor"] == "admin"
        assert audited["detail"] == {"phone_number_id": NUMBER_A, "bot_enabled": not before}
        tenant_page = await user.get(back)
        assert NUMBER_A in tenant_page.text and "TIER_1K" in tenant_page.text

        unknown = await user.post("/console/numbers/999999999/bot", {"bot_enabled": "true"})
        assert unknown.status_code == 404
        bad = await user.post(f"/console/numbers/{NUMBER_A}/bot", {"bot_enabled": "yes"})
        assert bad.status_code == 400


async def test_events_usage_and_ai_pages_with_their_filters(
    app: Running, db: asyncpg.Connection
) -> None:
    a = await app.create_tenant("Alpha Co")
    b = await app.create_tenant("Beta Co")
    patched = await app.client.patch(
        f"/v1/admin/tenants/{b['id']}", json={"active": False}, headers=app.admin()
    )
    assert patched.status_code == 200
    today = datetime.now(UTC).date()
    await db.executemany(
        "INSERT INTO token_usage (tenant_id, phone_number_id, model, feature, day, calls,"
        " input_tokens, output_tokens) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (uuid.UUID(a["id"]), NUMBER_A, "gpt-test", "reply", today, 3, 1200, 300),
            (
                uuid.UUID(a["id"]),
                NUMBER_A,
                "gpt-test",
                "reply",
                today - timedelta(days=20),
                2,
                800,
                100,
            ),
            (
                uuid.UUID(b["id"]),
                NUMBER_B,
                "whisper-test",
                "transcription",
                today - timedelta(days=3),
                1,
                50,
                5,
            ),
        ],
    )
    async with await operator(app) as user:
        every = await user.get("/console/events")
        assert every.status_code == 200
        assert every.text.count("tenant.created") == 2 and "tenant.updated" in every.text
        warnings = await user.get("/console/events", params={"severity": "warning"})
        assert "tenant.updated" in warnings.text and "tenant.created" not in warnings.text
        assert "Beta Co" in warnings.text
        alpha = await user.get("/console/events", params={"tenant": a["id"]})
        assert alpha.text.count("tenant.created") == 1 and "tenant.updated" not in alpha.text
        assert f'<option value="{a["id"]}" selected>Alpha Co</option>' in alpha.text
        assert (await user.get("/console/events", params={"severity": "fatal"})).status_code == 400
        assert (await user.get("/console/events", params={"tenant": "x"})).status_code == 400

        # A page of 50, newest first, and a link to the older ones that keeps the filters.
        await db.executemany(
            "INSERT INTO audit_log (tenant_id, actor, severity, action) VALUES ($1, 'admin',"
            " 'error', $2)",
            [(uuid.UUID(a["id"]), f"test.event_{i:02d}") for i in range(55)],
        )
        errors = await user.get("/console/events", params={"severity": "error", "tenant": a["id"]})
        assert "test.event_54" in errors.text and "test.event_04" not in errors.text
        older = re.search(r'href="(/console/events\?[^"]+)">Older events', errors.text)
        assert older
        rest = await user.get(older.group(1).replace("&amp;", "&"))
        assert "test.event_04" in rest.text and "test.event_05" not in rest.text
        assert "test.event_00" in rest.text and "tenant.created" not in rest.text

        week = await user.get("/console/usage")
        assert week.status_code == 200
        assert "Alpha Co" in week.text and "1,200" in week.text and "2,000" not in week.text
        assert "whisper-test" in week.text
        month = await user.get("/console/usage", params={"period": "30d"})
        assert "2,000" in month.text and "400" in month.text
        day = await user.get("/console/usage", params={"period": "today"})
        assert "Alpha Co" in day.text and "whisper-test" not in day.text
        assert (await user.get("/console/usage", params={"period": "year"})).status_code == 400

        ai = await user.get("/console/ai")
        assert ai.status_code == 200 and app.settings.ai_model in ai.text
        assert "api.openai.com" in ai.text and "not configured" in ai.text


async def test_a_business_gets_404_on_every_operator_page(
    app: Running, db: asyncpg.Connection
) -> None:
    created = await app.create_tenant("Curious Co")
    tenant_id = created["id"]
    async with ConsoleUser(app.base_url) as business:
        await business.sign_in(created["api_key"])
        for path in (
            "/console/tenants",
            f"/console/tenants/{tenant_id}",
            "/console/numbers",
            "/console/events",
            "/console/usage",
            "/console/ai",
        ):
            assert (await business.get(path)).status_code == 404, path
        for path, data in (
            ("/console/tenants", {"name": "Sneaky Co"}),
            (f"/console/tenants/{tenant_id}/active", {"active": "false"}),
            (f"/console/tenants/{tenant_id}/credits", {"amount": "1000", "reason": "free"}),
            (f"/console/tenants/{tenant_id}/invite", {"email": "me@curious.test"}),
            (f"/console/numbers/{NUMBER_A}/bot", {"bot_enabled": "true"}),
        ):
            assert (await business.post(path, data)).status_code == 404, path
    row = await db.fetchrow("SELECT active, credits_balance, link_generation FROM tenants")
    assert tuple(row) == (True, 0, 0)
    assert await db.fetchval("SELECT count(*) FROM tenants") == 1


async def test_a_post_without_the_csrf_token_changes_nothing(
    app: Running, db: asyncpg.Connection
) -> None:
    created = await app.create_tenant("Guarded Co")
    tenant_id = created["id"]
    async with await operator(app) as user:
        origin = {"origin": app.base_url}
        for path, data in (
            ("/console/tenants", {"name": "Forged Co"}),
            (f"/console/tenants/{tenant_id}/active", {"active": "false"}),
            (f"/console/tenants/{tenant_id}/credits", {"amount": "1000", "reason": "forged"}),
        ):
            without = await user.client.post(path, data=data, headers=origin)
            assert without.status_code == 403, path
            elsewhere = await user.client.post(
                path, data={**data, "csrf": user.csrf}, headers={"origin": "https://evil.example"}
            )
            assert elsewhere.status_code == 403, path
    row = await db.fetchrow("SELECT active, credits_balance FROM tenants")
    assert tuple(row) == (True, 0)
    assert await db.fetchval("SELECT count(*) FROM tenants") == 1
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 0
