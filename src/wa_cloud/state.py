"""What the lifespan opens and every request uses: one typed object, no module globals."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import httpx

from wa_cloud.config import Settings
from wa_cloud.graph.client import GraphClient
from wa_cloud.groupcommit import GroupCommit
from wa_cloud.metrics import Metrics
from wa_cloud.secretbox import SecretBox


@dataclass(slots=True)
class AppState:
    settings: Settings
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    graph: GraphClient
    deliveries: GroupCommit[tuple[str, bytes]]
    box: SecretBox
    metrics: Metrics
    # app_id -> (expires at, app secret, verify token): saves a query per tenant-app webhook.
    app_cache: dict[str, tuple[float, str, str]] = field(default_factory=dict, repr=False)
