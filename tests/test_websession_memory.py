"""1,000 web-session numbers cost a web or a worker process no more than 10 do: they are rows
(and one gateway instance each, at the gateway), not sessions held in our memory.

A real `serve --no-worker` and a real `wa-cloud worker` run against the sandbox's gateway; every
number is registered through the API, its instance created and connected by the watchdog, and
its QR code posted back through the webhook and indexed. The processes' resident memory is read
from /proc after 10 numbers and again after 1,000, and printed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import serve_asgi, start_worker
from tests.test_scaleout import _free_port, _ready, _start_web, _stop
from wa_cloud.config import Settings
from wa_cloud.sandbox.app import create_sandbox
from wa_cloud.sandbox.config import SandboxConfig
from wa_cloud.sandbox.gateway import API_KEY

# Growth allowed from 10 to 1,000 numbers: allocator noise, not a cost per number (a session
# held in memory would be several MB each, a thousand of them gigabytes).
MAX_GROWTH_BYTES = 12 * 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _waiting_for_scan(db: asyncpg.Connection, count: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while await db.fetchval("SELECT count(*) FROM web_sessions WHERE state = 'qr'") < count:
            await asyncio.sleep(0.2)


async def test_a_thousand_web_session_numbers_cost_no_more_memory_than_ten(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    config = SandboxConfig(webhook_url=None, app_secret=settings.app_secret or "")
    async with contextlib.AsyncExitStack() as stack:
        sandbox_url = await stack.enter_async_context(serve_asgi(create_sandbox(config)))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        local = replace(settings, graph_base_url=sandbox_url, public_url=url)
        log = tmp_path / "web.log"
        web = _start_web(local, port, log)
        worker = start_worker(local, WA_WORKER_LEASE_SECONDS="30")
        try:
            await _ready(web, url, log)
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
            created = await client.post(
                "/v1/admin/tenants",
                json={"name": "Many Phones"},
                headers={"authorization": f"Bearer {local.admin_token}"},
            )
            tenant = {"authorization": f"Bearer {created.json()['api_key']}"}
            gateway = {"url": f"{sandbox_url}/evolution", "api_key": API_KEY}

            async def register(first: int, last: int, step: int = 8) -> None:
                for n in range(first, last, step):
                    answer = await client.post(
                        "/v1/numbers",
                        json={
                            "provider": "websession",
                            "display_phone_number": f"55119{n:08d}",
                            "gateway": gateway,
                        },
                        headers=tenant,
                    )
                    assert answer.status_code == 201, answer.text

            await register(0, 10, 1)
            await _waiting_for_scan(db, 10, 30)
            await asyncio.sleep(1.0)
            web_10, worker_10 = rss(web.pid), rss(worker.pid)
            # Eight at a time, as tenants registering at once would: the same 990 rows sooner.
            await asyncio.gather(*(register(k, 1000) for k in range(10, 18)))
            await _waiting_for_scan(db, 1000, 240)
            await asyncio.sleep(1.0)
            web_1000, worker_1000 = rss(web.pid), rss(worker.pid)
        finally:
            await _stop([web, worker])
    mb = 1024 * 1024
    print(
        f"\nRSS with 10 web-session numbers: web {web_10 / mb:.1f} MB, worker {worker_10 / mb:.1f}"
        f" MB; with 1,000: web {web_1000 / mb:.1f} MB, worker {worker_1000 / mb:.1f} MB"
    )
    assert web_1000 - web_10 < MAX_GROWTH_BYTES
    assert worker_1000 - worker_10 < MAX_GROWTH_BYTES
