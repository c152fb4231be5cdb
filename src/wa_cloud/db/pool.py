"""The asyncpg pool and the URL forms the rest of the stack needs."""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

import asyncpg


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


async def create_pool(url: str, *, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        asyncpg_url(url),
        connection_class=_PooledConnection,
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        # Fail fast when the database is down: the webhook answers 503 and Meta retries.
        timeout=5,
        command_timeout=30,
    )
    assert pool is not None
    return pool
