"""Migrations are the only way the schema changes: they must apply, undo and re-apply cleanly."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import command

from wa_cloud.db import migrations
from wa_cloud.db.pool import connect


async def _tables(url: str) -> set[str]:
    conn: asyncpg.Connection = await connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return {r["table_name"] for r in rows}


async def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    before = await _tables(db_url)
    assert {"deliveries", "quarantine", "messages", "contacts", "statuses", "events"} <= before
    await asyncio.to_thread(migrations.upgrade, db_url, "head")  # already at head: a no-op
    config = migrations.alembic_config(db_url)
    await asyncio.to_thread(command.downgrade, config, "base")
    assert await _tables(db_url) == {"alembic_version"}
    await asyncio.to_thread(migrations.upgrade, db_url)
    assert await _tables(db_url) == before
    conn = await connect(db_url)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == (
            migrations.head_revision()
        )
    finally:
        await conn.close()
