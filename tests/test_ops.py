"""Operations endpoints: liveness, readiness (database and migrations) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import httpx

from tests.conftest import ROOT, Running, corpus, wait_idle
from wa_cloud.db.migrations import head_revision

MIGRATIONS = ROOT / "alembic" / "versions"

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?P<labels>\{[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\]|\\.)*\""
    r"(?:,[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\]|\\.)*\")*\})?"
    r" (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|Inf|NaN))$"
)


def parse_metrics(text: str) -> dict[str, float]:
    """Validate the Prometheus text format (0.0.4) and return {'name{labels}': value}."""
    assert text.endswith("\n")
    typed: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert help_text, line
            helped.add(name)
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in typed, f"two TYPE lines for {name}"
            typed[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a Prometheus sample line: {line!r}"
            name = match["name"]
            assert name in typed and name in helped, f"{name} has no HELP/TYPE before it"
            key = name + (match["labels"] or "")
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = float(match["value"])
    return samples


def assert_prometheus_content_type(response: httpx.Response) -> None:
    media, *params = (p.strip() for p in response.headers["content-type"].split(";"))
    assert media == "text/plain"
    assert "version=0.0.4" in params
    assert set(params) <= {"version=0.0.4", "charset=utf-8"}


async def scrape(running: Running) -> dict[str, float]:
    response = await running.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert_prometheus_content_type(response)
    return parse_metrics(response.text)


def error_code(response: httpx.Response) -> Any:
    return response.json()["error"]["code"]


async def test_healthz(web: Running) -> None:
    response = await web.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def latest_migration() -> str:
    """The revision of the newest file in alembic/versions (named `<revision>_<what>.py`)."""
    return max(p.name.split("_", 1)[0] for p in MIGRATIONS.glob("[0-9]*_*.py"))


async def test_readyz_ready_at_head(web: Running, db: asyncpg.Connection) -> None:
    head = head_revision()
    assert head == latest_migration()
    assert head >= "0001"
    response = await web.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "schema": head}
    assert await db.fetchval("SELECT version_num FROM alembic_version") == head


async def test_readyz_503_when_schema_is_not_head(web: Running, db: asyncpg.Connection) -> None:
    await db.execute("UPDATE alembic_version SET version_num = '0000'")
    response = await web.client.get("/readyz")
    assert response.status_code == 503, response.text
    assert error_code(response) == "migrations_pending"
    assert "0000" in response.json()["error"]["message"]

    await db.execute("DELETE FROM alembic_version")
    response = await web.client.get("/readyz")
    assert response.status_code == 503, response.text
    assert error_code(response) == "migrations_pending"

    await db.execute("INSERT INTO alembic_version (version_num) VALUES ($1)", head_revision())
    assert (await web.client.get("/readyz")).status_code == 200


async def test_metrics_is_prometheus_text_with_help_and_type(web: Running) -> None:
    response = await web.client.get("/metrics")
    assert response.status_code == 200
    assert_prometheus_content_type(response)
    text = response.text
    for name, kind in (
        ("wa_webhook_deliveries_received_total", "counter"),
        ("wa_webhook_rejected_total", "counter"),
        ("wa_deliveries", "gauge"),
        ("wa_processing_lag_seconds", "gauge"),
        ("wa_orphaned_events", "gauge"),
    ):
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} {kind}\n" in text
    samples = parse_metrics(text)
    assert samples["wa_webhook_deliveries_received_total"] == 0
    assert samples["wa_processing_lag_seconds"] == 0
    assert samples["wa_orphaned_events"] == 0


async def test_metrics_count_deliveries_rejects_and_processing(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    for name in ("messages/text.json", "statuses/sent.json"):
        assert (await app.post_webhook(corpus(name))).status_code == 200
    unsigned = await app.client.post("/webhook", content=corpus("messages/text.json"))
    assert unsigned.status_code == 401
    await wait_idle(db)

    samples = await scrape(app)
    assert samples['wa_webhook_deliveries_received_total{source="platform"}'] == 2
    assert samples['wa_webhook_rejected_total{reason="signature_missing"}'] == 1
    assert samples['wa_deliveries{state="processed"}'] == 2
    assert 'wa_deliveries{state="pending"}' not in samples
    assert samples["wa_processing_lag_seconds"] == 0
    assert samples["wa_orphaned_events"] == 0
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 2

    assert (await app.post_webhook(corpus("orphan/text_unknown_number.json"))).status_code == 200
    await wait_idle(db)
    samples = await scrape(app)
    assert samples["wa_orphaned_events"] > 0
    assert samples["wa_orphaned_events"] == await db.fetchval(
        "SELECT count(*) FROM events WHERE orphaned"
    )
    assert samples['wa_deliveries{state="processed"}'] == 3
    assert samples['wa_webhook_deliveries_received_total{source="platform"}'] == 3


async def test_metrics_show_pending_work_and_lag_without_a_worker(
    web: Running, db: asyncpg.Connection
) -> None:
    assert (await web.post_webhook(corpus("messages/text.json"))).status_code == 200
    await asyncio.sleep(0.3)
    samples = await scrape(web)
    assert samples['wa_deliveries{state="pending"}'] == 1
    assert samples["wa_processing_lag_seconds"] >= 0.2
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'") == 1
