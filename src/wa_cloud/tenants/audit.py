"""The audit log: every admin and tenant change is a row (who, what, how serious).

Written on the caller's connection, inside the change's own transaction where there is one, so
a change and its record commit together. Details never hold secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg

from wa_cloud.db.queries import Q

ADMIN = "admin"
# How serious a row is, least first (audit_log.severity's CHECK constraint allows these).
SEVERITIES = ("info", "warning", "error")


def tenant_actor(tenant_id: UUID) -> str:
    return f"tenant:{tenant_id}"


async def record(
    conn: asyncpg.Connection,
    action: str,
    *,
    tenant_id: UUID | None,
    actor: str,
    severity: str = "info",
    detail: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(Q.insert_audit, tenant_id, actor, severity, action, dict(detail or {}))
