"""The asyncpg pool and the URL forms the rest of the stack needs."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# What a database call raises when PostgreSQL is unreachable, restarting or overloaded: the
# errors a caller rides out (retry, back off, answer 503) rather than a bug to report.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def asyncpg_url(url: str) -> str:
    """asyncpg takes postgresql:// only; accept the SQLAlchemy and Heroku spellings too."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return urlunsplit((scheme, *parts[1:]))


def sqlalchemy_url(url: str) -> str:
    parts = urlsplit(asyncpg_url(url))
    return urlunsplit(("postgresql+asyncpg", *parts[1:]))


def jsonb_text(value: Any) -> str | None:
    """A value as the jsonb codec below writes it, for the text[] that stands in for a jsonb[]
    parameter (asyncpg reads a list inside an array parameter as one more dimension)."""
    return None if value is None else json.dumps(value)


async def _init_connection(connection: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects; json.dumps once here instead of at every call site.
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


async def connect(url: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(asyncpg_url(url))
    await _init_connection(connection)
    return connection


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    def get_reset_query(self) -> str:
        # Pooled connections keep no session state: LISTEN lives on dedicated connections, and
        # nothing here uses SET, cursors or session advisory locks. asyncpg still rolls back an
        # open transaction on release; skipping its RESET ALL query saves a round trip (and
        # server work) on every release, which the webhook path does hundreds of times a second.
        return ""


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    """A pool whose `acquire` gives up after `acquire_timeout` (TimeoutError: the API answers
    503) instead of queueing forever behind work that holds every connection."""

    acquire_timeout: float | None = None

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(
    url: str, *, max_size: int = 10, acquire_timeout: float | None = None, name: str = "wa-cloud"
) -> asyncpg.Pool:
    """`name` is the connections' application_name: pg_stat_activity tells the web process's
    API, its webhook ingest and the workers apart."""
    # Built like asyncpg.create_pool builds its pool, with our class.
    pool = BoundedPool(
        asyncpg_url(url),
        server_settings={"application_name": name},
        connection_class=_PooledConnection,
        record_class=asyncpg.Record,
        min_size=1,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connect=None,
        setup=None,
        init=_init_connection,
        reset=None,
        # Fail fast when the database is down: the webhook answers 503 and Meta retries.
        timeout=5,
        command_timeout=30,
    )
    pool.acquire_timeout = acquire_timeout
    await pool
    return pool
