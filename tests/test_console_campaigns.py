"""The business's campaign pages of the console (console/campaigns.py): the list and a
campaign's page with the counts the database has, pause and resume through the API's own
function, the recipients.csv download, and every route refusing another tenant's campaign.

Campaigns are scheduled a month ahead and the worker does not run: nothing is sent, and the
progress a page shows is what the test writes into the database.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.conftest import NUMBER_A, Meta, meta_running
from tests.console_client import ConsoleUser
from tests.test_campaigns import create, recipients, seed_template
from tests.test_console_attacks import assert_safe
from wa_cloud.config import Settings

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def quiet_meta(settings: Settings) -> AsyncIterator[Meta]:
    async with meta_running(settings, run_worker=False) as running:
        yield running


async def scheduled_campaign(meta: Meta, name: str = "Spring") -> dict[str, Any]:
    """Four recipients and a line that is no phone number, a month ahead."""
    await seed_template(meta)
    month_ahead = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    listed = [*recipients(4), {"to": "12", "variables": ["x", "y"]}]
    created = await create(meta, name=name, recipients=listed, at=month_ahead)
    assert created["status"] == "scheduled"
    return created


async def progress_in_db(db: asyncpg.Connection, meta: Meta, broadcast_id: str) -> None:
    """Line 1 delivered, line 2 failed with Meta's error 131026 (as the sender records them)."""
    for line, status, errors in (
        (1, "delivered", None),
        (2, "failed", [{"code": 131026, "title": "Message undeliverable"}]),
    ):
        message_id = await db.fetchval(
            "INSERT INTO messages (tenant_id, phone_number_id, direction, type, payload, request,"
            " recipient, status, errors, author, broadcast_id, priority)"
            " SELECT $1::uuid, $2, 'out', 'template', '{}', '{}', recipient, $4, $5::jsonb,"
            " 'campaign', broadcast_id, 1"
            " FROM broadcast_recipients WHERE broadcast_id = $3::uuid AND line = $6"
            " RETURNING id",
            meta.tenant_id,
            NUMBER_A,
            broadcast_id,
            status,
            errors or [],
            line,
        )
        await db.execute(
            "UPDATE broadcast_recipients SET state = 'queued', message_id = $1"
            " WHERE broadcast_id = $2::uuid AND line = $3",
            message_id,
            broadcast_id,
            line,
        )


def counts_row(page: str, name: str) -> list[str]:
    """The number cells of the list's row of the campaign called `name`."""
    row = re.search(
        r"<tr>\s*<td><a href=\"/console/campaigns/[^\"]+\">" + name + r"</a>.*?</tr>", page, re.S
    )
    assert row, page
    return re.findall(r'<td class="num">([^<]*)</td>', row.group(0))


async def state_of(db: asyncpg.Connection, broadcast_id: str) -> tuple[str, str | None]:
    row = await db.fetchrow(
        "SELECT status, paused_reason FROM broadcasts WHERE id = $1::uuid", broadcast_id
    )
    return row["status"], row["paused_reason"]


async def test_list_and_campaign_page_show_the_counts_from_the_database(
    quiet_meta: Meta, db: asyncpg.Connection
) -> None:
    meta = quiet_meta
    created = await scheduled_campaign(meta)
    await progress_in_db(db, meta, created["id"])
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        listed = await owner.get("/console/campaigns")
        assert listed.status_code == 200, listed.text
        assert '<a href="/console/campaigns" aria-current="page">Campaigns</a>' in listed.text
        assert_safe(listed)
        assert 'data-live="message" data-src="/console/campaigns/list"' in listed.text
        assert "spring_promo" in listed.text and "POST /v1/broadcasts" in listed.text
        estimate = f"{created['estimate']['amount']:.2f} USD"
        # queued, sent, delivered, read, failed, skipped, the estimate
        assert counts_row(listed.text, "Spring") == ["2", "0", "1", "0", "1", "1", estimate]

        fragment = await owner.get("/console/campaigns/list", headers={"x-console-fragment": "1"})
        assert fragment.status_code == 200
        assert "<html" not in fragment.text
        assert counts_row(fragment.text, "Spring") == counts_row(listed.text, "Spring")

        page = await owner.get(f"/console/campaigns/{created['id']}")
        assert page.status_code == 200, page.text
        assert_safe(page)
        api = (
            await meta.app.client.get(f"/v1/broadcasts/{created['id']}", headers=meta.tenant())
        ).json()
        assert api["failed_by_code"] == {"131026": 1}
        assert api["skipped_by_reason"] == {"invalid_number": 1}
        cells = re.findall(r'<td class="num">([^<]*)</td>', page.text)
        # total and the six counts, then failures by code, then skips by reason
        assert cells == ["5", "2", "0", "1", "0", "1", "1", "1", "1"]
        assert "<td><code>131026</code></td>" in page.text
        assert "<td>invalid_number</td>" in page.text
        assert f'href="/console/campaigns/{created["id"]}/recipients.csv"' in page.text
        assert f'data-src="/console/campaigns/{created["id"]}/progress"' in page.text
        for action in ("pause", "cancel"):
            assert f'action="/console/campaigns/{created["id"]}/{action}"' in page.text
        assert f'/{created["id"]}/resume"' not in page.text  # not for a scheduled campaign

        progress = await owner.get(f"/console/campaigns/{created['id']}/progress")
        assert progress.status_code == 200 and "<html" not in progress.text
        assert re.findall(r'<td class="num">([^<]*)</td>', progress.text) == cells

        # 50 a page, newest first: 50 older copies push one onto the next page.
        await db.execute(
            "INSERT INTO broadcasts (tenant_id, phone_number_id, name, template, category,"
            " status, run_at, estimate, created_at)"
            " SELECT tenant_id, phone_number_id, 'Old ' || i, template, category, 'done',"
            " run_at, estimate, created_at - make_interval(days => i)"
            " FROM broadcasts, generate_series(1, 50) AS i WHERE id = $1::uuid",
            created["id"],
        )
        first = await owner.get("/console/campaigns")
        names = re.findall(r'<a href="/console/campaigns/[0-9a-f-]{36}">([^<]+)</a>', first.text)
        assert names == ["Spring", *(f"Old {i}" for i in range(1, 50))]
        older = re.search(r'<a href="([^"]+)">Older campaigns</a>', first.text)
        assert older
        second = await owner.get(older.group(1).replace("&amp;", "&"))
        assert re.findall(
            r'<a href="/console/campaigns/[0-9a-f-]{36}">([^<]+)</a>', second.text
        ) == ["Old 50"]
        assert "Older campaigns" not in second.text and "Newest campaigns" in second.text


async def test_pause_then_resume_change_the_campaigns_state(
    quiet_meta: Meta, db: asyncpg.Connection
) -> None:
    meta = quiet_meta
    created = await scheduled_campaign(meta)
    base = f"/console/campaigns/{created['id']}"
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        paused = await owner.post(f"{base}/pause")
        assert paused.status_code == 303
        assert paused.headers["location"] == f"{base}?moved=pause"
        assert await state_of(db, created["id"]) == ("paused", "paused by the business")
        shown = await owner.get(paused.headers["location"])
        assert "Paused." in shown.text and f'action="{base}/resume"' in shown.text

        # A move the state does not allow: the API's message and status, nothing changed.
        again = await owner.post(f"{base}/pause")
        assert again.status_code == 409
        assert "A paused campaign cannot be paused." in again.text
        assert await state_of(db, created["id"]) == ("paused", "paused by the business")
        unknown = await owner.post(f"{base}/restart")
        assert unknown.status_code == 404

        resumed = await owner.post(f"{base}/resume")
        assert resumed.status_code == 303
        assert await state_of(db, created["id"]) == ("running", None)

        # A deactivated tenant reads its campaigns but changes none.
        deactivated = await meta.app.client.patch(
            f"/v1/admin/tenants/{meta.tenant_id}", json={"active": False}, headers=meta.app.admin()
        )
        assert deactivated.status_code == 200, deactivated.text
        refused = await owner.post(f"{base}/pause")
        assert refused.status_code == 403 and "deactivated" in refused.text
        assert await state_of(db, created["id"]) == ("running", None)
        read = await owner.get(base)
        assert read.status_code == 200 and "deactivated" in read.text
        assert f'action="{base}/pause"' not in read.text


async def test_recipients_csv_downloads_every_line(
    quiet_meta: Meta, db: asyncpg.Connection
) -> None:
    meta = quiet_meta
    created = await scheduled_campaign(meta)
    await progress_in_db(db, meta, created["id"])
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        download = await owner.get(f"/console/campaigns/{created['id']}/recipients.csv")
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert download.headers["cache-control"] == "no-store"
    assert download.headers["content-disposition"] == (
        f'attachment; filename="recipients-{created["id"]}.csv"'
    )
    assert download.text.startswith("to,status,wamid,error_code,reason\n")
    lines = list(csv.reader(io.StringIO(download.text)))
    assert lines[1:] == [
        ["34600000000", "delivered", "", "", ""],
        ["34600000001", "failed", "", "131026", "Message undeliverable"],
        ["34600000002", "queued", "", "", ""],
        ["34600000003", "queued", "", "", ""],
        ["12", "skipped", "", "", "invalid_number"],
    ]
    api = await meta.app.client.get(
        f"/v1/broadcasts/{created['id']}/recipients.csv", headers=meta.tenant()
    )
    assert api.text == download.text


async def test_another_tenants_campaign_is_a_404_and_forms_need_the_csrf_token(
    quiet_meta: Meta, db: asyncpg.Connection
) -> None:
    meta = quiet_meta
    created = await scheduled_campaign(meta, name="Secret sale")
    base = f"/console/campaigns/{created['id']}"
    other = await meta.app.create_tenant("Intruder Co")
    async with ConsoleUser(meta.app.base_url) as intruder, ConsoleUser(meta.app.base_url) as owner:
        await intruder.sign_in(other["api_key"])
        own_list = await intruder.get("/console/campaigns")
        assert own_list.status_code == 200 and "Secret sale" not in own_list.text
        assert "No campaigns yet" in own_list.text
        for path in (base, f"{base}/progress", f"{base}/recipients.csv"):
            response = await intruder.get(path)
            assert response.status_code == 404, path
            assert "Secret sale" not in response.text
        for action in ("pause", "resume", "cancel"):
            assert (await intruder.post(f"{base}/{action}")).status_code == 404
        assert (await intruder.get(f"/console/campaigns/{uuid.uuid4()}")).status_code == 404
        assert (await intruder.get("/console/campaigns/not-an-id")).status_code == 404
        assert await state_of(db, created["id"]) == ("scheduled", None)

        await owner.sign_in(meta.api_key)
        forged = await owner.client.post(
            f"{base}/cancel",
            data={"csrf": "forged"},
            headers={"origin": str(owner.client.base_url).rstrip("/")},
        )
        assert forged.status_code == 403
        other_site = await owner.client.post(
            f"{base}/cancel",
            data={"csrf": owner.csrf},
            headers={"origin": "https://attacker.example"},
        )
        assert other_site.status_code == 403
        assert await state_of(db, created["id"]) == ("scheduled", None)
