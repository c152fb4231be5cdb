"""What the lifespan opens and every request uses: one typed object, no module globals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from wa_cloud.config import Settings
from wa_cloud.db.announce import Announcer
from wa_cloud.db.groupcommit import GroupCommit
from wa_cloud.graph.client import GraphClient
from wa_cloud.metrics import Metrics
from wa_cloud.outbox.templates import TemplateFetches
from wa_cloud.ratelimit import FailedLookups, KeyRateLimiter, TenantSlots
from wa_cloud.secretbox import SecretBox
from wa_cloud.urlguard import GuardedClient

if TYPE_CHECKING:
    from wa_cloud.api.auth import Caller
    from wa_cloud.console.live import LiveHub
    from wa_cloud.worker import Health

MB = 1024 * 1024


@dataclass(slots=True)
class AppState:
    settings: Settings
    pool: asyncpg.Pool
    # Tenant-supplied URLs (media by URL, forwarding): every connection through the URL guard.
    tenant_http: GuardedClient
    graph: GraphClient
    deliveries: GroupCommit[tuple[str, bytes]]
    # Wakes the worker's sender once a send the API queued is committed (db/announce.py).
    outbox: Announcer
    box: SecretBox
    metrics: Metrics
    # Webhook ingest's own connections: API traffic or a slow query elsewhere never starves it.
    ingest_pool: asyncpg.Pool
    # app_id -> (expires at, app secret, verify token): saves a query per tenant-app webhook.
    app_cache: dict[str, tuple[float, str, str]] = field(default_factory=dict, repr=False)
    # app_id -> expires at, for ids no tenant registered: no query per made-up app id.
    unknown_apps: dict[str, float] = field(default_factory=dict, repr=False)
    # phone_number_id -> (expires at, its gateway secret's hash or None): web-session webhooks.
    session_secrets: dict[str, tuple[float, bytes | None]] = field(default_factory=dict, repr=False)
    # The in-process worker's loops (`serve` without --no-worker), for /readyz.
    worker_health: Health | None = None
    # Console pages' live updates: one LISTEN connection for the process (console/live.py).
    live: LiveHub | None = None
    key_rates: KeyRateLimiter = field(default_factory=lambda: KeyRateLimiter(50.0, 200), repr=False)
    # key hash -> (expires at, the caller): api/auth.py.
    key_cache: dict[bytes, tuple[float, Caller]] = field(default_factory=dict, repr=False)
    # Lookups that found no key or no app: past this rate, uncached ones go one at a time.
    failed_lookups: FailedLookups = field(
        default_factory=lambda: FailedLookups(20.0, 100), repr=False
    )
    # Media uploads in flight per tenant in this process (api/media.py).
    upload_slots: TenantSlots = field(default_factory=lambda: TenantSlots(2), repr=False)
    template_fetches: TemplateFetches = field(default_factory=TemplateFetches, repr=False)
    # Escaped-unicode signature checks, bytes a second (signature.py).
    signature_fallbacks: KeyRateLimiter = field(
        default_factory=lambda: KeyRateLimiter(2 * MB, 8 * MB), repr=False
    )
    signature_fallback_turn: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    # Webhook bodies above LARGE_WEBHOOK_BYTES, bytes a second (inbound/receiver.py).
    large_webhooks: KeyRateLimiter = field(
        default_factory=lambda: KeyRateLimiter(16 * MB, 32 * MB), repr=False
    )
