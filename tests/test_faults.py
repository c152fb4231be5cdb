"""Faults: the database going away under the receiver, a worker killed mid-batch."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from tests.conftest import NUMBER_A, Running, corpus, serve, start_worker
from wa_cloud.config import Settings
from wa_cloud.sandbox.corpus import text_message


class Proxy:
    """A loopback TCP proxy to PostgreSQL that can be cut: to the app it is the database going
    down (connections reset, new ones refused) and coming back on the same address."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        self._unix = f"{socket_dir}/.s.PGSQL.{parts.port or 5432}" if socket_dir else None
        self._tcp = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._upstream = parts
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        p = self._upstream
        userinfo = f"{p.username or 'postgres'}:{p.password or ''}@"
        return urlunsplit(("postgresql", f"{userinfo}127.0.0.1:{self.port}", p.path, "", ""))

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._unix:
            up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self._tcp)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@contextlib.asynccontextmanager
async def through_proxy(settings: Settings) -> AsyncIterator[tuple[Running, Proxy]]:
    assert settings.database_url
    proxy = Proxy(settings.database_url)
    await proxy.up()
    async with serve(replace(settings, database_url=proxy.url), run_worker=False) as running:
        yield running, proxy
    with contextlib.suppress(AssertionError):
        await proxy.down()


async def test_database_down_answers_503_and_stores_nothing_half_written(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with through_proxy(settings) as (web, proxy):
        first = text_message(NUMBER_A, "16505551234", "before the outage")
        assert (await web.post_webhook(first)).status_code == 200

        await proxy.down()
        during = text_message(NUMBER_A, "16505551234", "during the outage")
        responses = await asyncio.gather(*(web.post_webhook(during) for _ in range(5)))
        for response in responses:
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "database_unavailable"
        ready = await web.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "database_unavailable"

        await proxy.up()  # Meta retries: the same body now lands once
        assert (await web.post_webhook(during)).status_code == 200
        assert (await web.client.get("/readyz")).status_code == 200

    bodies = [bytes(r["body"]) for r in await db.fetch("SELECT body FROM deliveries ORDER BY id")]
    assert bodies == [first, during]


async def test_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(
    web: Running, db: asyncpg.Connection
) -> None:
    tenant = await web.create_tenant()
    assert (await web.add_number(tenant["api_key"], NUMBER_A)).status_code == 201
    total = 600
    bodies = [text_message(NUMBER_A, f"4479{i % 50:08d}", f"message {i}") for i in range(total)]
    for start in range(0, total, 50):
        responses = await asyncio.gather(*(web.post_webhook(b) for b in bodies[start : start + 50]))
        assert {r.status_code for r in responses} == {200}
    # The same deliveries again, as Meta would redeliver them.
    assert (await web.post_webhook(bodies[0])).status_code == 200
    assert (await web.post_webhook(corpus("messages/text.json"))).status_code == 200

    first = start_worker(web.settings, WA_WORKER_BATCH_SIZE="25")
    try:
        async with asyncio.timeout(60):
            while not await db.fetchval("SELECT count(*) FROM messages"):
                await asyncio.sleep(0.005)
        first.send_signal(signal.SIGKILL)  # no goodbye: open transaction, claimed leases
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    pending = await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'")
    assert pending > 0, "the worker finished before it was killed; make the backlog larger"

    second = start_worker(web.settings, WA_WORKER_BATCH_SIZE="25")
    try:
        async with asyncio.timeout(60):
            while await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'"):
                await asyncio.sleep(0.05)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0  # graceful stop on SIGTERM

    states = dict(await db.fetch("SELECT state, count(*) FROM deliveries GROUP BY state"))
    assert states == {"processed": total + 2}
    assert await db.fetchval("SELECT count(*) FROM messages") == total + 1
    assert await db.fetchval("SELECT count(DISTINCT wamid) FROM messages") == total + 1
    assert await db.fetchval("SELECT count(*) FROM contacts") == 51
    texts = {r["text"] for r in await db.fetch("SELECT text FROM messages")}
    assert {f"message {i}" for i in range(total)} <= texts
