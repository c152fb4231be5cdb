"""The business's numbers and usage pages of the console (console/numbers.py, usage.py):
the list and each number's page with its live connection region, the assistant's form saved
through the API's own rules, the preview of the instructions, a web session's QR code changing
live, the usage page's ledger and chart, and every route refusing another tenant's number.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.conftest import NUMBER_A, NUMBER_B, Meta
from tests.console_client import ConsoleUser
from tests.test_websession import PHONE, register, wait_state
from wa_cloud.ai.tools import open_secrets
from wa_cloud.console.charts import Group, bar_chart, nice_ceiling
from wa_cloud.db.queries import Q
from wa_cloud.secretbox import SecretBox

pytestmark = pytest.mark.asyncio

TOOL_SECRET = "tool-header-secret-4711"
MODEL_KEY = "sk-tenant-model-key-0815"


async def api_bot(meta: Meta, number: str = NUMBER_A) -> dict[str, Any]:
    response = await meta.app.client.get(f"/v1/numbers/{number}/bot", headers=meta.tenant())
    assert response.status_code == 200, response.text
    return dict(response.json())


async def put_bot(meta: Meta, **config: Any) -> dict[str, Any]:
    response = await meta.app.client.put(
        f"/v1/numbers/{NUMBER_A}/bot", json=config, headers=meta.tenant()
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def form_of(bot: dict[str, Any], **changes: str) -> dict[str, str]:
    """The form as the page fills it from `bot`, with `changes`."""
    fields = {
        name: "" if bot[name] is None else str(bot[name])
        for name in (
            "instructions",
            "model",
            "base_url",
            "api",
            "reasoning_effort",
            "timezone",
            "fallback_text",
            "out_of_credits_text",
            "media_unavailable_text",
            "max_output_tokens",
            "history_turns",
            "credits_per_reply",
            "retention_hours",
            "temperature",
            "debounce_seconds",
            "human_takeover_minutes",
        )
    }
    fields["owner_phones"] = "\n".join(bot["owner_phones"])
    fields.update({name: "on" for name in ("enabled", "voice_replies") if bot[name]})
    fields.update(changes)
    return {k: v for k, v in fields.items() if v != "off"}


# The list and the page ---------------------------------------------------------------------
async def test_numbers_list_and_page_show_the_state(meta: Meta, db: asyncpg.Connection) -> None:
    await db.execute(
        "UPDATE numbers SET quality_rating = 'GREEN', messaging_limit = 'TIER_1K'"
        " WHERE phone_number_id = $1",
        NUMBER_A,
    )
    async with ConsoleUser(meta.app.base_url) as user:
        await user.sign_in(meta.api_key)
        listed = await user.get("/console/my-numbers")
        assert listed.status_code == 200, listed.text
        page = listed.text
        display = await db.fetchval(
            "SELECT display_phone_number FROM numbers WHERE phone_number_id = $1", NUMBER_A
        )
        assert f'href="/console/my-numbers/{NUMBER_A}">{display}</a>' in page
        assert "Sandbox Business" in page and "Cloud API" in page
        assert '<span class="badge ok">Connected</span>' in page
        assert '<span class="badge ok">GREEN</span>' in page
        assert "1,000 customers / 24 h" in page
        assert '<span class="badge">Off</span>' in page  # the assistant
        # No inline script or style anywhere, and the console's strict policy.
        assert "<script>" not in page and "style=" not in page
        assert "script-src 'self'" in listed.headers["content-security-policy"]

        shown = await user.get(f"/console/my-numbers/{NUMBER_A}")
        assert shown.status_code == 200, shown.text
        assert (
            f'data-live="number" data-number="{NUMBER_A}"'
            f' data-src="/console/my-numbers/{NUMBER_A}/session"'
        ) in shown.text
        fragment = await user.get(
            f"/console/my-numbers/{NUMBER_A}/session", headers={"x-console-fragment": "1"}
        )
        assert fragment.status_code == 200
        assert '<span class="badge ok">Connected</span>' in fragment.text
        assert "<html" not in fragment.text  # a fragment, not a page
        # Sending stopped for the number: the list says so.
        await db.execute(
            "UPDATE numbers SET flagged_reason = 'token expired' WHERE phone_number_id = $1",
            NUMBER_A,
        )
        again = await user.get(f"/console/my-numbers/{NUMBER_A}/session")
        assert "Sending stopped" in again.text and "token expired" in again.text


# The assistant's form -----------------------------------------------------------------------
async def test_the_form_saves_through_the_api_rules_and_keeps_what_it_does_not_show(
    meta: Meta, db: asyncpg.Connection
) -> None:
    tool = {
        "name": "order_status",
        "description": "Where an order is",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        "method": "POST",
        "url": "https://shop.example/api/orders/{{order_id}}",
        "headers": {"X-Key": TOOL_SECRET},
    }
    before = await put_bot(
        meta,
        instructions="You sell shoes.",
        base_url="https://llm.example/v1",
        api_key=MODEL_KEY,
        tools=[tool],
        extract_fields=[{"name": "city", "description": "Where the customer lives"}],
        follow_ups=[{"after_minutes": 120, "max": 2, "text": "Still there?"}],
    )
    async with ConsoleUser(meta.app.base_url) as user:
        await user.sign_in(meta.api_key)
        page = await user.get(f"/console/my-numbers/{NUMBER_A}")
        assert page.status_code == 200
        # Secrets never reach the page; the tool is listed by name, method and host.
        assert MODEL_KEY not in page.text and TOOL_SECRET not in page.text
        assert "A key is stored" in page.text
        assert "<code>order_status</code></td><td>POST</td><td>shop.example</td>" in page.text
        assert 'name="instructions"' in page.text and "You sell shoes.</textarea>" in page.text

        saved = await user.post(
            f"/console/my-numbers/{NUMBER_A}/bot",
            form_of(
                before,
                instructions="You sell boots.\r\nBe brief.",
                enabled="off",
                temperature="0.2",
                debounce_seconds="4",
                owner_phones="+1 650 555 1234\n5511987654321",
                voice_replies="on",
                retention_hours="48",
                human_takeover_minutes="15",
                timezone="America/Bogota",
            ),
        )
        assert saved.status_code == 303, saved.text
        assert saved.headers["location"] == f"/console/my-numbers/{NUMBER_A}?saved=1"
        after = await api_bot(meta)
        assert after["instructions"] == "You sell boots.\nBe brief."
        assert after["enabled"] is False and after["voice_replies"] is True
        assert after["temperature"] == pytest.approx(0.2) and after["debounce_seconds"] == 4.0
        assert after["owner_phones"] == ["16505551234", "5511987654321"]
        assert after["retention_hours"] == 48 and after["human_takeover_minutes"] == 15.0
        assert after["timezone"] == "America/Bogota"
        # What the form does not show is kept: tools (and their header values), fields, rules,
        # the endpoint's key.
        for kept in ("tools", "extract_fields", "follow_ups", "base_url", "model"):
            assert after[kept] == before[kept], kept
        assert after["has_api_key"] is True
        row = await db.fetchrow(
            "SELECT b.tool_secrets_enc, n.bot_enabled FROM bots b JOIN numbers n"
            " USING (phone_number_id) WHERE phone_number_id = $1",
            NUMBER_A,
        )
        box = SecretBox(meta.app.settings.secret_key or "")
        assert open_secrets(box, NUMBER_A, row["tool_secrets_enc"]) == {
            "order_status": {"X-Key": TOOL_SECRET}
        }
        assert row["bot_enabled"] is False
        audited = await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'bot.configured' AND tenant_id = $1",
            uuid.UUID(meta.tenant_id),
        )
        assert audited == 2  # the PUT and the form
        confirmed = await user.get(saved.headers["location"])
        assert 'role="status">Saved.' in confirmed.text

        # A bad value: the API's message, 422, the form as typed, nothing saved.
        refused = await user.post(
            f"/console/my-numbers/{NUMBER_A}/bot",
            form_of(after, instructions="Changed, but refused.", temperature="5"),
        )
        assert refused.status_code == 422, refused.text
        assert "&#39;temperature&#39; must be a number from 0 to 2." in refused.text
        assert "Changed, but refused.</textarea>" in refused.text
        not_a_number = await user.post(
            f"/console/my-numbers/{NUMBER_A}/bot", form_of(after, max_output_tokens="lots")
        )
        assert not_a_number.status_code == 422
        assert "&#39;max_output_tokens&#39; must be a whole number from 16 to 32000." in (
            not_a_number.text
        )
        bad_phone = await user.post(
            f"/console/my-numbers/{NUMBER_A}/bot", form_of(after, owner_phones="call me")
        )
        assert bad_phone.status_code == 422
        assert "owner_phones" in bad_phone.text
        assert await api_bot(meta) == after

        # Removing the stored key leaves none.
        await user.post(f"/console/my-numbers/{NUMBER_A}/bot", form_of(after, forget_api_key="on"))
        assert (await api_bot(meta))["has_api_key"] is False


async def test_the_preview_renders_the_variables_in_the_numbers_time_zone(meta: Meta) -> None:
    instructions = (
        "Hi {{contact_name}}, this is {{ business_name }}. Today is {{today}}. <b>{{unknown}}</b>"
    )
    await put_bot(meta, instructions=instructions, timezone="Asia/Tokyo")
    async with ConsoleUser(meta.app.base_url) as user:
        await user.sign_in(meta.api_key)
        page = await user.get(f"/console/my-numbers/{NUMBER_A}")
        local = datetime.now(ZoneInfo("Asia/Tokyo"))
        rendered = (
            f"Hi Maria, this is Sandbox Business. Today is {local:%A} {local:%Y-%m-%d}."
            " &lt;b&gt;{{unknown}}&lt;/b&gt;"
        )
        assert f'<pre class="instructions-preview">{rendered}</pre>' in page.text

        # The Preview button shows what was typed, filled in, and saves nothing.
        typed = await user.post(
            f"/console/my-numbers/{NUMBER_A}/bot",
            form_of(
                await api_bot(meta),
                instructions="It is {{now}} here.",
                timezone="UTC",
                preview="1",
            ),
        )
        assert typed.status_code == 200, typed.text
        now = datetime.now(UTC)
        preview = typed.text.split('<pre class="instructions-preview">')[1].split("</pre>")[0]
        assert preview.startswith(f"It is {now:%Y-%m-%d} ") and preview.endswith("(UTC) here.")
        assert "It is {{now}} here.</textarea>" in typed.text
        assert (await api_bot(meta))["instructions"] == instructions


# A web session's QR code ----------------------------------------------------------------------
async def test_a_web_sessions_qr_code_shows_and_changes_live(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await register(meta)
    shown = await wait_state(meta, "qr")
    async with ConsoleUser(meta.app.base_url) as user:
        await user.sign_in(meta.api_key)
        listed = await user.get("/console/my-numbers")
        assert "Web session" in listed.text and "Waiting for a scan" in listed.text
        page = await user.get(f"/console/my-numbers/{PHONE}")
        assert f'<img src="{shown["qr_base64"]}" alt="QR code to link WhatsApp"' in page.text
        fragment = await user.get(f"/console/my-numbers/{PHONE}/session")
        assert f'<img src="{shown["qr_base64"]}" alt="QR code to link WhatsApp"' in fragment.text

        # The gateway hands a new code: the stream says the number changed, and the region's
        # fragment has the new image and the pairing code.
        events: list[str] = []

        async def listen() -> None:
            async with user.client.stream("GET", "/console/live") as stream:
                async for line in stream.aiter_lines():
                    events.append(line)

        listening = asyncio.create_task(listen())
        async with asyncio.timeout(5):
            while "retry: 3000" not in events:
                await asyncio.sleep(0.02)
        new_qr = "data:image/png;base64," + "QUJD" * 10
        await db.execute(
            "UPDATE web_sessions SET qr_base64 = $2, pairing_code = 'WZYX1234'"
            " WHERE phone_number_id = $1",
            PHONE,
            new_qr,
        )
        try:
            async with asyncio.timeout(10):
                while f"data: {PHONE}" not in events:
                    await asyncio.sleep(0.02)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        assert "event: number" in events
        changed = await user.get(
            f"/console/my-numbers/{PHONE}/session", headers={"x-console-fragment": "1"}
        )
        assert f'<img src="{new_qr}" alt="QR code to link WhatsApp"' in changed.text
        assert shown["qr_base64"] not in changed.text
        assert "WZYX1234" in changed.text
        # Scanned: no code any more, the session is linked.
        await db.execute("UPDATE web_sessions SET state = 'open' WHERE phone_number_id = $1", PHONE)
        linked = await user.get(f"/console/my-numbers/{PHONE}/session")
        assert "Linked" in linked.text and "<img" not in linked.text


# Usage ------------------------------------------------------------------------------------------
async def add_messages(
    db: asyncpg.Connection, meta: Meta, at: datetime, inbound: int, outbound: int
) -> None:
    await db.execute(
        "INSERT INTO messages (tenant_id, phone_number_id, direction, type, payload, status,"
        " created_at)"
        " SELECT $1::uuid, $2, d, 'text', '{}', 'sent', $3"
        "   FROM unnest(array_fill('in'::text, ARRAY[$4::int])"
        "               || array_fill('out'::text, ARRAY[$5::int])) d",
        meta.tenant_id,
        NUMBER_A,
        at,
        inbound,
        outbound,
    )


async def test_the_usage_page_shows_the_ledger_tokens_and_messages_per_day(
    meta: Meta, db: asyncpg.Connection
) -> None:
    credited = await meta.app.client.post(
        f"/v1/admin/tenants/{meta.tenant_id}/credits",
        json={"amount": 1500, "reason": "Welcome <pack>"},
        headers=meta.app.admin(),
    )
    assert credited.status_code == 201, credited.text
    await db.execute(
        "INSERT INTO token_usage (tenant_id, phone_number_id, model, feature, day, calls,"
        " input_tokens, output_tokens) VALUES ($1::uuid, $2, 'gpt-test', 'reply', current_date,"
        " 3, 12345, 678)",
        meta.tenant_id,
        NUMBER_A,
    )
    now = datetime.now(UTC)
    three_days_ago = now - timedelta(days=3)
    await add_messages(db, meta, three_days_ago, 3, 2)
    await add_messages(db, meta, now - timedelta(days=40), 7, 7)  # before the chart's days
    await add_messages(db, meta, now, 1, 0)
    async with ConsoleUser(meta.app.base_url) as user:
        await user.sign_in(meta.api_key)
        page = await user.get("/console/my-usage")
        assert page.status_code == 200, page.text
        text = page.text
        assert "<strong>1,500</strong> credits left" in text
        assert "Welcome &lt;pack&gt;" in text and "+1,500" in text
        assert "<td>gpt-test</td><td>reply</td><td>3</td><td>12,345</td><td>678</td>" in text
        chart = text.split("<svg")[1].split("</svg>")[0]
        assert 'role="img"' in chart and "<title id=" in chart
        assert f"<title>{three_days_ago:%b %d}: 3 in, 2 out</title>" in chart
        assert f"<title>{now:%b %d}: 1 in, 0 out</title>" in chart
        assert chart.count('<g class="group">') == 30
        assert "style=" not in chart
        # The table beside the chart holds the same numbers.
        assert f"<td>{three_days_ago.date().isoformat()}</td><td>3</td><td>2</td>" in text

    # The ended days were counted once and kept (zeros too); today is counted on each view.
    kept = {
        r["day"]: (r["inbound"], r["outbound"])
        for r in await db.fetch(
            "SELECT day, inbound, outbound FROM message_days WHERE tenant_id = $1::uuid",
            meta.tenant_id,
        )
    }
    assert kept[three_days_ago.date()] == (3, 2)
    # Yesterday is kept from 00:10 UTC on (a transaction begun before midnight may still commit).
    assert len(kept) in (28, 29, 30) and sum(v[0] + v[1] for v in kept.values()) == 5
    assert now.date() not in kept


async def test_the_days_query_reads_messages_through_an_index(db: asyncpg.Connection) -> None:
    await db.execute("SET enable_seqscan = off")
    plan = await db.fetchval(
        "EXPLAIN (FORMAT JSON) " + Q.console_message_days,
        uuid.uuid4(),
        datetime.now(UTC).date() - timedelta(days=29),
    )
    scans = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name"):
            scans.append((node["Node Type"], node["Relation Name"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(plan)[0]["Plan"])
    assert ("Seq Scan", "messages") not in scans, scans
    assert any(relation == "messages" for _, relation in scans)


async def test_the_bar_chart_escapes_labels_and_scales_to_a_round_top() -> None:
    svg = bar_chart("A <b>", "d & e", ["in", "out"], [Group("x<y", (3, 7)), Group("z", (0, 0))])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert '<title id="chart-title">A &lt;b&gt;</title>' in svg and "d &amp; e" in svg
    assert "x&lt;y: 3 in, 7 out" in svg and "<y" not in svg.replace("<y1", "")
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 150, 999)] == [1, 1, 5, 10, 20, 200, 1000]
    with pytest.raises(ValueError):
        bar_chart("t", "d", ["in"], [Group("x", (1, 2))])


# Isolation and CSRF --------------------------------------------------------------------------
async def test_another_tenants_number_is_not_found_on_every_route(
    meta: Meta, db: asyncpg.Connection
) -> None:
    other = await meta.app.create_tenant("Other Co")
    added = await meta.app.add_number(other["api_key"], NUMBER_B, waba_id="102290129340399")
    assert added.status_code == 201, added.text
    uploaded = await meta.app.client.post(
        f"/v1/numbers/{NUMBER_B}/files",
        files={"file": ("prices.txt", b"Boots: 40 EUR\n", "text/plain")},
        data={"title": "Prices"},
        headers={"authorization": f"Bearer {other['api_key']}"},
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    before = await meta.app.client.get(
        f"/v1/numbers/{NUMBER_B}/bot", headers={"authorization": f"Bearer {other['api_key']}"}
    )
    async with ConsoleUser(meta.app.base_url) as user:
        await user.sign_in(meta.api_key)
        assert NUMBER_B not in (await user.get("/console/my-numbers")).text
        for path in (f"/console/my-numbers/{NUMBER_B}", f"/console/my-numbers/{NUMBER_B}/session"):
            assert (await user.get(path)).status_code == 404, path
        bot = form_of(before.json(), instructions="Taken over.")
        assert (await user.post(f"/console/my-numbers/{NUMBER_B}/bot", bot)).status_code == 404
        preview = {**bot, "preview": "1"}
        assert (await user.post(f"/console/my-numbers/{NUMBER_B}/bot", preview)).status_code == 404
        deleted = await user.post(f"/console/my-numbers/{NUMBER_B}/files/{file_id}/delete")
        assert deleted.status_code == 404
        # The file of a number of one's own, by another number's id: not found either.
        crossed = await user.post(f"/console/my-numbers/{NUMBER_A}/files/{file_id}/delete")
        assert crossed.status_code == 404
        malformed = await user.post(f"/console/my-numbers/{NUMBER_A}/files/not-a-uuid/delete")
        assert malformed.status_code == 404
    after = await meta.app.client.get(
        f"/v1/numbers/{NUMBER_B}/bot", headers={"authorization": f"Bearer {other['api_key']}"}
    )
    assert after.json() == before.json()
    assert await db.fetchval("SELECT count(*) FROM bot_files WHERE id = $1::uuid", file_id) == 1

    # Its owner sees the file on the number's page and deletes it there.
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(other["api_key"])
        page = await owner.get(f"/console/my-numbers/{NUMBER_B}")
        assert "<td>Prices" in page.text and "14 Bytes" in page.text
        assert f'action="/console/my-numbers/{NUMBER_B}/files/{file_id}/delete"' in page.text
        gone = await owner.post(f"/console/my-numbers/{NUMBER_B}/files/{file_id}/delete")
        assert gone.status_code == 303, gone.text
    assert await db.fetchval("SELECT count(*) FROM bot_files WHERE id = $1::uuid", file_id) == 0
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_log"
            " WHERE action = 'bot.file_deleted' AND tenant_id = $1::uuid",
            other["id"],
        )
        == 1
    )

    # The operator has no numbers pages of its own.
    async with ConsoleUser(meta.app.base_url) as operator:
        await operator.sign_in(meta.app.settings.admin_token or "")
        assert (await operator.get(f"/console/my-numbers/{NUMBER_A}")).status_code == 404
        assert (await operator.get("/console/my-usage")).status_code == 404


async def test_a_post_without_the_csrf_token_or_from_a_deactivated_tenant_changes_nothing(
    meta: Meta,
) -> None:
    await put_bot(meta, instructions="Original.")
    original = await api_bot(meta)
    form = form_of(original, instructions="Forged.")
    async with ConsoleUser(meta.app.base_url) as user:
        await user.sign_in(meta.api_key)
        path = f"/console/my-numbers/{NUMBER_A}/bot"
        origin = {"origin": meta.app.base_url}
        forged = await user.client.post(path, data=form, headers=origin)
        assert forged.status_code == 403
        wrong = await user.client.post(path, data={**form, "csrf": "guess"}, headers=origin)
        assert wrong.status_code == 403
        elsewhere = await user.client.post(
            path, data={**form, "csrf": user.csrf}, headers={"origin": "https://evil.example"}
        )
        assert elsewhere.status_code == 403
        assert (
            await user.client.post(
                f"/console/my-numbers/{NUMBER_A}/files/{uuid.uuid4()}/delete", headers=origin
            )
        ).status_code == 403
        assert await api_bot(meta) == original

        paused = await meta.app.client.patch(
            f"/v1/admin/tenants/{meta.tenant_id}", json={"active": False}, headers=meta.app.admin()
        )
        assert paused.status_code == 200, paused.text
        refused = await user.post(path, form)
        assert refused.status_code == 403
        assert "deactivated" in refused.text
        assert (await user.get(f"/console/my-numbers/{NUMBER_A}")).status_code == 200
        assert (await user.get("/console/my-usage")).status_code == 200
        assert await api_bot(meta) == original
