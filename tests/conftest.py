"""Test fixtures: a real PostgreSQL, a migrated template database, one fresh database per test,
and the real app served by uvicorn on loopback.

PostgreSQL is the embedded one (pgserver) unless WA_TEST_DATABASE_URL names a server whose user
may create databases. Each test gets `CREATE DATABASE ... TEMPLATE wa_template`: a clean, fully
migrated schema in milliseconds, and real multi-connection behaviour (SKIP LOCKED, NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn

from wa_cloud.app import create_app
from wa_cloud.config import Settings
from wa_cloud.db import embedded, migrations
from wa_cloud.db.pool import asyncpg_url, connect, create_pool
from wa_cloud.inbound.signature import sign

NUMBER_A = "106540352242922"
NUMBER_B = "106540352242923"
WABA = "102290129340398"
ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "webhooks"

_counter = itertools.count()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(asyncpg_url(url))
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("WA_TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = embedded.server(tmp_path_factory.mktemp("pg"), keep_running=False)
    yield server.get_uri()
    server.cleanup()


def _admin(pg_server_url: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_url(pg_server_url))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def template_url(pg_server_url: str) -> Iterator[str]:
    name = f"wa_template_{os.getpid()}"
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name}")
    _admin(pg_server_url, f"CREATE DATABASE {name}")
    url = with_database(pg_server_url, name)
    migrations.upgrade(url)
    yield url
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Databases:
    """Each test's database, copied from the template ahead of time and dropped afterwards by a
    thread of its own: a copy takes about 0.4 s here, and a test spends most of its time
    waiting on something."""

    def __init__(self, server_url: str, template_url: str, ahead: int = 2) -> None:
        self._server = server_url
        self._template = urlsplit(template_url).path.lstrip("/")
        self._ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=ahead)
        self._used: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="test-databases", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        name: str | None = None
        try:
            while not self._stop.is_set():
                self._drop_used()
                if name is None:
                    name = f"wa_test_{os.getpid()}_{next(_counter)}"
                    _admin(self._server, f"CREATE DATABASE {name} TEMPLATE {self._template}")
                with contextlib.suppress(queue.Full):
                    self._ready.put(name, timeout=0.1)
                    name = None
        except BaseException as exc:  # the test that waits for a database says why
            self._ready.put(exc)
        finally:
            if name is not None:
                self._drop(name)

    def _drop(self, name: str) -> None:
        _admin(self._server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _drop_used(self) -> None:
        while not self._used.empty():
            self._drop(self._used.get_nowait())

    def take(self) -> str:
        made = self._ready.get(timeout=120)
        if isinstance(made, BaseException):
            raise RuntimeError("the test database could not be made") from made
        return made

    def done(self, name: str) -> None:
        self._used.put(name)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        while not self._ready.empty():
            made = self._ready.get_nowait()
            if isinstance(made, str):
                self._drop(made)
        self._drop_used()


@pytest.fixture(scope="session")
def databases(pg_server_url: str, template_url: str) -> Iterator[Databases]:
    made = Databases(pg_server_url, template_url)
    yield made
    made.close()


@pytest.fixture
def db_url(pg_server_url: str, databases: Databases) -> Iterator[str]:
    name = databases.take()
    yield with_database(pg_server_url, name)
    databases.done(name)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=tmp_path,
        app_id="1000000000000001",
        app_secret="platform-app-secret",
        verify_token="platform-verify-token",
        admin_token="adm_" + secrets.token_urlsafe(24),
        secret_key=secrets.token_urlsafe(32),
        log_format="json",
        worker_poll_seconds=0.2,
        worker_lease_seconds=5.0,
        worker_max_attempts=3,
        # The fakes (sandbox Meta, tenants' endpoints) listen on loopback.
        allow_private_urls=True,
        # Tests drive one key hard (schemathesis above all); the limit has its own test.
        api_rate_per_second=100_000.0,
        api_rate_burst=100_000,
    )


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(db_url)
    yield conn
    await conn.close()


@contextlib.asynccontextmanager
async def pool_of(db_url: str | None) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the test's database, for what takes one (retention, consumers)."""
    assert db_url
    pool = await create_pool(db_url, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass
class Running:
    """The app served on loopback, with a client and the settings it runs with."""

    base_url: str
    client: httpx.AsyncClient
    settings: Settings
    sandbox: httpx.AsyncClient  # the sandbox Meta this app's Graph calls go to

    async def post_webhook(
        self, body: bytes, *, secret: str | None = None, path: str = "/webhook"
    ) -> httpx.Response:
        return await self.client.post(
            path,
            content=body,
            headers={
                "content-type": "application/json",
                "x-hub-signature-256": sign(body, secret or self.settings.app_secret or ""),
            },
        )

    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.settings.admin_token}"}

    async def create_tenant(self, name: str = "Acme") -> dict[str, Any]:
        response = await self.client.post(
            "/v1/admin/tenants", json={"name": name}, headers=self.admin()
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def seed_number(
        self, phone_number_id: str, waba_id: str = WABA, token: str | None = None, **extra: Any
    ) -> str:
        """Make the number exist at (sandbox) Meta with its token, as onboarding expects."""
        token = token or "EAAG-test-token-" + phone_number_id
        seeded = await self.sandbox.post(
            "/_sandbox/numbers",
            json={
                "phone_number_id": phone_number_id,
                "waba_id": waba_id,
                "access_token": token,
                **extra,
            },
        )
        assert seeded.status_code == 201, seeded.text
        return token

    async def seed_app(self, app_id: str, app_secret: str) -> None:
        """Make a Meta app exist at (sandbox) Meta, so its owner can prove it to us."""
        seeded = await self.sandbox.post(
            "/_sandbox/apps", json={"app_id": app_id, "app_secret": app_secret}
        )
        assert seeded.status_code == 201, seeded.text

    async def add_number(
        self, api_key: str, phone_number_id: str, waba_id: str = WABA, **extra: Any
    ) -> httpx.Response:
        """Register a number through the API, after it was made to exist at Meta."""
        # Meta knows the number's display number and PIN; a malformed PIN is the API's to refuse.
        seed = {k: v for k, v in extra.items() if k == "display_phone_number"}
        if isinstance(extra.get("pin"), str) and extra["pin"].isdigit() and len(extra["pin"]) == 6:
            seed["pin"] = extra["pin"]
        token = await self.seed_number(phone_number_id, waba_id, **seed)
        return await self.client.post(
            "/v1/numbers",
            json={
                "phone_number_id": phone_number_id,
                "waba_id": waba_id,
                "access_token": token,
                **extra,
            },
            headers={"authorization": f"Bearer {api_key}"},
        )


def bound_socket() -> socket.socket:
    """A loopback socket bound now, so its URL is known before the server on it starts."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on loopback (lifespan on); yield its base URL."""
    sock = sock or bound_socket()
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def serve(
    settings: Settings,
    *,
    run_worker: bool,
    sock: socket.socket | None = None,
    sandbox: httpx.AsyncClient | None = None,
) -> AsyncIterator[Running]:
    """The app on loopback. Its Graph API is a sandbox Meta: the one given, or a fresh one
    (posting no webhooks) when the settings still name Meta's real address."""
    from wa_cloud.sandbox.app import create_sandbox
    from wa_cloud.sandbox.config import SandboxConfig

    async with contextlib.AsyncExitStack() as stack:
        if sandbox is None:
            assert settings.graph_base_url == Settings().graph_base_url, "pass its sandbox"
            config = SandboxConfig(webhook_url=None, app_secret=settings.app_secret or "")
            sandbox_url = await stack.enter_async_context(serve_asgi(create_sandbox(config)))
            sandbox = await stack.enter_async_context(
                httpx.AsyncClient(base_url=sandbox_url, timeout=15)
            )
            settings = replace(settings, graph_base_url=sandbox_url)
        base_url = await stack.enter_async_context(
            serve_asgi(create_app(settings, run_worker=run_worker), sock)
        )
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=15))
        yield Running(base_url, client, settings, sandbox)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    """The web process with its in-process worker, as `wa-cloud serve` runs it."""
    async with serve(settings, run_worker=True) as running:
        yield running


@pytest.fixture
async def web(settings: Settings) -> AsyncIterator[Running]:
    """The web process alone (`serve --no-worker`): deliveries stay pending."""
    async with serve(settings, run_worker=False) as running:
        yield running


@pytest.fixture
async def tenant(app: Running) -> dict[str, Any]:
    """A tenant owning number A (and B) of the corpus."""
    created = await app.create_tenant("Corpus Co")
    for number in (NUMBER_A, NUMBER_B):
        response = await app.add_number(created["api_key"], number)
        assert response.status_code == 201, response.text
    return created


async def wait_idle(conn: asyncpg.Connection, timeout: float = 15.0) -> None:
    """Wait until the worker has processed (or quarantined) every stored delivery."""
    async with asyncio.timeout(timeout):
        while await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'"):
            await asyncio.sleep(0.05)


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


@dataclass
class Meta:
    """The sandbox Meta on loopback and our app (with worker) talking to it."""

    app: Running
    sandbox: httpx.AsyncClient
    api_key: str
    tenant_id: str

    def tenant(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}

    async def customer_writes(self, text: str = "hi", sender: str = "16505551234") -> str:
        """The customer messages number A through the sandbox; wait until we indexed it."""
        response = await self.sandbox.post(
            "/_sandbox/inbound", json={"phone_number_id": NUMBER_A, "from": sender, "text": text}
        )
        assert response.status_code == 200, response.text
        assert response.json()["webhook_status"] == 200
        wamid = str(response.json()["id"])
        async with asyncio.timeout(10):
            while True:
                listed = await self.app.client.get(
                    f"/v1/contacts/{sender}/messages",
                    params={"phone_number_id": NUMBER_A},
                    headers=self.tenant(),
                )
                if listed.status_code == 200 and any(
                    m["wamid"] == wamid for m in listed.json()["data"]
                ):
                    return wamid
                await asyncio.sleep(0.02)

    async def send(self, **request: Any) -> httpx.Response:
        return await self.app.client.post(
            "/v1/messages", json={"from": NUMBER_A, **request}, headers=self.tenant()
        )

    async def message(self, message_id: str) -> dict[str, Any]:
        response = await self.app.client.get(f"/v1/messages/{message_id}", headers=self.tenant())
        assert response.status_code == 200, response.text
        return response.json()

    async def wait_status(
        self, message_id: str, *statuses: str, timeout: float = 15.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.message(message_id)
                if message["status"] in statuses:
                    return message
                assert message["status"] != "failed", message["errors"]
                await asyncio.sleep(0.05)

    async def sent_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of every message send the sandbox received, oldest first."""
        response = await self.sandbox.get(
            "/_sandbox/requests", params={"path_contains": "/messages"}
        )
        return [
            r["body"]
            for r in response.json()["data"]
            if r["method"] == "POST" and isinstance(r["body"], dict) and r["body"].get("type")
        ]


@contextlib.asynccontextmanager
async def meta_running(
    settings: Settings,
    *,
    run_worker: bool = True,
    models: bool = False,
    gemini: bool = True,
    status_delays: tuple[float, float, float] = (0.02, 0.04, 0.06),
) -> AsyncIterator[Meta]:
    """`models`: the app's model endpoints (OpenAI-compatible and, with `gemini`, Gemini) are
    the sandbox's. `status_delays`: when the sandbox reports sent, delivered and read."""
    from wa_cloud.sandbox.app import create_sandbox
    from wa_cloud.sandbox.config import SandboxConfig

    app_sock = bound_socket()
    app_url = f"http://127.0.0.1:{app_sock.getsockname()[1]}"
    config = SandboxConfig(
        webhook_url=app_url + "/webhook",
        app_secret=settings.app_secret or "",
        sent_delay=status_delays[0],
        delivered_delay=status_delays[1],
        read_delay=status_delays[2],
    )
    async with (
        serve_asgi(create_sandbox(config)) as sandbox_url,
        httpx.AsyncClient(base_url=sandbox_url, timeout=15) as sandbox,
    ):
        token = "EAAG-test-token-" + NUMBER_A
        seeded = await sandbox.post(
            "/_sandbox/numbers",
            json={
                "phone_number_id": NUMBER_A,
                "waba_id": WABA,
                "access_token": token,
                "display_phone_number": "15550783881",
                "throughput_mps": 80,
            },
        )
        assert seeded.status_code == 201, seeded.text
        # The app's public address is where it tells gateways to post (web-session webhooks).
        local = replace(
            settings, graph_base_url=sandbox_url, public_url=settings.public_url or app_url
        )
        if models:
            local = replace(
                local,
                openai_base_url=f"{sandbox_url}/openai/v1",
                openai_api_key="sk-sandbox-platform",
                ai_model="echo",
                gemini_api_key="gemini-sandbox-key" if gemini else None,
                gemini_base_url=f"{sandbox_url}/gemini",
            )
        async with serve(local, run_worker=run_worker, sock=app_sock, sandbox=sandbox) as app:
            tenant = await app.create_tenant("Sender Co")
            added = await app.add_number(tenant["api_key"], NUMBER_A)
            assert added.status_code == 201, added.text
            yield Meta(app, sandbox, tenant["api_key"], tenant["id"])


@pytest.fixture
async def meta(settings: Settings) -> AsyncIterator[Meta]:
    async with meta_running(settings) as running:
        yield running


def process_env(settings: Settings, **env: str) -> dict[str, str]:
    """The environment a `wa-cloud` subprocess needs to run against the test's settings."""
    assert settings.database_url and settings.secret_key
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "WA_SECRET_KEY": settings.secret_key,
        "WA_APP_SECRET": settings.app_secret or "",
        "WA_ADMIN_TOKEN": settings.admin_token or "",
        "WA_GRAPH_BASE_URL": settings.graph_base_url,
        "WA_LOG_FORMAT": "json",
        "WA_ALLOW_PRIVATE_URLS": "true" if settings.allow_private_urls else "false",
        "WA_API_RATE_PER_SECOND": str(settings.api_rate_per_second),
        "WA_API_RATE_BURST": str(settings.api_rate_burst),
        **({"WA_PUBLIC_URL": settings.public_url} if settings.public_url else {}),
        **(
            {
                "OPENAI_BASE_URL": settings.openai_base_url,
                "OPENAI_API_KEY": settings.openai_api_key or "",
                "WA_AI_MODEL": settings.ai_model or "",
            }
            if settings.openai_base_url
            else {}
        ),
        **env,
    }


def start_worker(settings: Settings, **env: str) -> subprocess.Popen[bytes]:
    """`wa-cloud worker` as its own process against the test's database (to kill it)."""
    defaults = {"WA_WORKER_LEASE_SECONDS": "1", "WA_WORKER_POLL_SECONDS": "0.2"}
    environ = process_env(settings, **{**defaults, **env})
    return subprocess.Popen(
        [sys.executable, "-m", "wa_cloud.cli", "worker"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# The assistant ------------------------------------------------------------------------------
@pytest.fixture
async def bot(settings: Settings) -> AsyncIterator[Meta]:
    """The sandbox Meta and its model fakes, our app and worker (the assistant tests)."""
    async with meta_running(settings, models=True) as running:
        yield running


async def configure_bot(meta: Meta, **config: Any) -> dict[str, Any]:
    body = {"debounce_seconds": 0, **config}
    response = await meta.app.client.put(
        f"/v1/numbers/{NUMBER_A}/bot", json=body, headers=meta.tenant()
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def give_credits(db: asyncpg.Connection, meta: Meta, amount: int = 100) -> None:
    await db.execute(
        "UPDATE tenants SET credits_balance = $2 WHERE id = $1::uuid", meta.tenant_id, amount
    )


async def replies_done(db: asyncpg.Connection, count: int, timeout: float = 15.0) -> list[Any]:
    """Wait until `count` reply jobs finished; their rows, oldest first."""
    async with asyncio.timeout(timeout):
        while True:
            rows = await db.fetch("SELECT * FROM replies ORDER BY id")
            finished = [r for r in rows if r["state"] in ("done", "failed")]
            if len(finished) >= count and len(finished) == len(rows):
                return finished
            await asyncio.sleep(0.05)


async def sent_to_customer(meta: Meta, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Wait until Meta received `count` messages; their bodies."""
    async with asyncio.timeout(timeout):
        while True:
            bodies = await meta.sent_bodies()
            if len(bodies) >= count:
                return bodies
            await asyncio.sleep(0.05)


async def model_requests(meta: Meta, api: str | None = None) -> list[dict[str, Any]]:
    response = await meta.sandbox.get("/_models/requests")
    assert response.status_code == 200, response.text
    return [r for r in response.json()["data"] if api is None or r["api"] == api]
