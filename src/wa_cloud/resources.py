"""What a process opens once and closes on the way out: the database pool, the HTTP clients,
the Graph client, the secret box and the metrics. The web app's lifespan, the worker and the
CLI's commands all open them here, so each is built one way."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from wa_cloud.config import Settings
from wa_cloud.db.pool import create_pool
from wa_cloud.graph.client import GraphClient, new_http_client, new_send_session
from wa_cloud.metrics import Metrics
from wa_cloud.secretbox import SecretBox
from wa_cloud.urlguard import GuardedClient, UrlGuard

# A tenant's URL answering slower than this per read is an error (media fetches also have an
# overall bound, forwards their own).
TENANT_URL_TIMEOUT_SECONDS = 10.0
TENANT_URL_CONNECTIONS = 256


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    pool: asyncpg.Pool
    # Tenant-supplied URLs: every connection through the URL guard, no cookies kept.
    tenant_http: GuardedClient
    graph: GraphClient
    box: SecretBox
    metrics: Metrics


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    pool_size: int,
    acquire_timeout: float | None = None,
    name: str = "wa-cloud",
) -> AsyncIterator[Resources]:
    if not settings.database_url or not settings.secret_key:
        raise ValueError("opening resources needs settings.database_url and settings.secret_key")
    pool = await create_pool(
        settings.database_url, max_size=pool_size, acquire_timeout=acquire_timeout, name=name
    )
    try:
        async with (
            new_http_client(settings.graph_timeout_seconds) as http,
            new_send_session(settings.graph_timeout_seconds) as sends,
            UrlGuard(allow_private=settings.allow_private_urls).client(
                timeout=TENANT_URL_TIMEOUT_SECONDS, max_connections=TENANT_URL_CONNECTIONS
            ) as tenant_http,
        ):
            yield Resources(
                settings=settings,
                pool=pool,
                tenant_http=tenant_http,
                graph=GraphClient(http, sends, settings.graph_base_url, settings.graph_version),
                box=SecretBox(settings.secret_key, settings.previous_secret_keys),
                metrics=Metrics(),
            )
    finally:
        await pool.close()
