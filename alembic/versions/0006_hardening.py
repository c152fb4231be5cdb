"""Hardening: indexes for the hot tenant queries, flagged numbers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
-- The status page counts a tenant's messages of the day.
CREATE INDEX messages_tenant_day ON messages (tenant_id, created_at);
-- GET /v1/media/{id}: a tenant's media by Meta's id.
CREATE INDEX media_tenant ON media (tenant_id, media_id);
"""

DOWNGRADE = """
DROP INDEX media_tenant;
DROP INDEX messages_tenant_day
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
