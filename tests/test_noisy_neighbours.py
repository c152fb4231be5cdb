"""One tenant must not slow the others: no connection held while Meta answers, one template
fetch per WABA however many sends ask, a per-key request rate, and a metrics endpoint that can
be closed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import (
    NUMBER_A,
    NUMBER_B,
    Meta,
    Running,
    corpus,
    meta_running,
    serve,
    serve_asgi,
)
from tests.test_media import PNG
from wa_cloud.config import Settings

CUSTOMER = "16505551234"


def _unknown_template(name: str) -> dict[str, Any]:
    return {"name": name, "language": {"code": "en_US"}}


async def test_sends_waiting_on_a_slow_meta_hold_no_connection(
    settings: Settings, db: asyncpg.Connection
) -> None:
    # A pool of 3 connections: before, each send held one across Meta's template lookup, so
    # a handful of them starved the API and ingest of connections for as long as Meta took.
    async with meta_running(replace(settings, db_pool_size=3), run_worker=False) as meta:
        slow = await meta.sandbox.post(
            "/_sandbox/latency", json={"path_contains": "message_templates", "seconds": 3}
        )
        assert slow.status_code == 201, slow.text
        sends = [
            asyncio.create_task(
                meta.send(to=CUSTOMER, type="template", template=_unknown_template(f"nope_{i}"))
            )
            for i in range(20)
        ]
        await asyncio.sleep(0.3)  # every send is now waiting on Meta
        # Meanwhile the API and the webhook ingest answer, while Meta has not answered yet.
        listed = await meta.app.client.get("/v1/numbers", headers=meta.tenant())
        assert listed.status_code == 200
        for _ in range(10):
            stored = await meta.app.post_webhook(corpus("messages/text.json"))
            assert stored.status_code == 200
        assert not any(task.done() for task in sends), "all of this came before Meta answered"

        answers = await asyncio.gather(*sends)
        assert {(a.status_code, a.json()["error"]["code"]) for a in answers} == {
            (422, "template_not_found")
        }
        # One fetch of the WABA's templates served the 20 sends (one at a time per WABA).
        fetched = await meta.sandbox.get(
            "/_sandbox/requests", params={"path_contains": "message_templates"}
        )
        assert len(fetched.json()["data"]) == 1
        # And the names Meta does not have are remembered briefly: no fetch for them again.
        again = await meta.send(to=CUSTOMER, type="template", template=_unknown_template("nope_3"))
        assert again.json()["error"]["code"] == "template_not_found"
        fetched = await meta.sandbox.get(
            "/_sandbox/requests", params={"path_contains": "message_templates"}
        )
        assert len(fetched.json()["data"]) == 1
        assert await db.fetchval("SELECT count(*) FROM deliveries") == 10


async def test_an_api_key_over_its_rate_gets_429_with_retry_after(settings: Settings) -> None:
    limited = replace(settings, api_rate_per_second=2.0, api_rate_burst=5)
    async with serve(limited, run_worker=False) as app:
        first = await app.create_tenant("Busy")
        second = await app.create_tenant("Calm")
        answers = [
            await app.client.get("/v1/numbers", headers=_bearer(first["api_key"])) for _ in range(8)
        ]
        statuses = [a.status_code for a in answers]
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        # Another key is not slowed by the first one's flood.
        calm = await app.client.get("/v1/numbers", headers=_bearer(second["api_key"]))
        assert calm.status_code == 200
        # A key that waits is admitted again.
        await asyncio.sleep(0.6)
        again = await app.client.get("/v1/numbers", headers=_bearer(first["api_key"]))
        assert again.status_code == 200


async def test_metrics_token_closes_the_metrics_endpoint(settings: Settings) -> None:
    closed = replace(settings, metrics_token="m" * 40)
    async with serve(closed, run_worker=False) as app:
        assert (await app.client.get("/metrics")).status_code == 401
        wrong = await app.client.get("/metrics", headers=_bearer("x" * 40))
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"
        right = await app.client.get("/metrics", headers=_bearer("m" * 40))
        assert right.status_code == 200 and "wa_deliveries" in right.text


async def test_metrics_stay_open_without_a_token(web: Running) -> None:
    assert (await web.client.get("/metrics")).status_code == 200


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_a_tenants_uploads_are_bounded_and_do_not_hold_another_tenants(
    meta: Meta,
) -> None:
    release = asyncio.Event()

    async def slow_file(request: Request) -> Response:
        await release.wait()  # a slow (or huge) file at the tenant's URL
        return Response(PNG, media_type="image/png")

    other = await meta.app.create_tenant("Other Co")
    added = await meta.app.add_number(other["api_key"], NUMBER_B, "102290129349999")
    assert added.status_code == 201, added.text
    async with serve_asgi(Starlette(routes=[Route("/file.png", slow_file)])) as url:
        upload = {"from": NUMBER_A, "type": "image", "url": url + "/file.png"}
        held = [
            asyncio.create_task(
                meta.app.client.post("/v1/media", json=upload, headers=meta.tenant())
            )
            for _ in range(2)
        ]
        await asyncio.sleep(0.3)
        third = await meta.app.client.post("/v1/media", json=upload, headers=meta.tenant())
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "rate_limited"
        assert third.headers["retry-after"] == "1"
        # Another tenant's upload is not behind them.
        files = {"file": ("a.png", PNG, "image/png")}
        theirs = await meta.app.client.post(
            "/v1/media",
            data={"from": NUMBER_B, "type": "image"},
            files=files,
            headers=_bearer(other["api_key"]),
        )
        assert theirs.status_code == 201, theirs.text
        assert not any(task.done() for task in held)
        release.set()
        assert [(await task).status_code for task in held] == [201, 201]


async def test_guessing_api_keys_locks_no_tenant_out(settings: Settings) -> None:
    """Past the rate of unknown keys, uncached keys are looked up one at a time: the guesses
    get 401 (never a query each in parallel), and a real tenant's key, not yet cached, is
    answered in its turn instead of refused with everyone else's (a lockout by guessing)."""
    strict = replace(settings, api_rate_per_second=1.0, api_rate_burst=2)
    async with serve(strict, run_worker=False) as web:
        tenant = await web.create_tenant()  # its key not used yet: not cached

        async def guess() -> int:
            answer = await web.client.get("/v1/numbers", headers=_bearer("wa_junk"))
            return answer.status_code

        guesses = [asyncio.create_task(guess()) for _ in range(200)]
        async with asyncio.timeout(10):  # the flood under way, past the failure rate
            while sum(task.done() for task in guesses) < 5:
                await asyncio.sleep(0.01)
        real = await web.client.get("/v1/numbers", headers=_bearer(tenant["api_key"]))
        codes = set(await asyncio.gather(*guesses))
    assert real.status_code == 200, real.text
    assert codes == {401}, codes
