"""Inbound media claims walk the tenants with pending downloads (fair per tenant) through this
index, as forward claims do. (It was first added to 0006 after 0006 had shipped: databases past
0006 never got it; IF NOT EXISTS for those created while it was there.)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE INDEX IF NOT EXISTS media_tenant_due ON media (tenant_id, run_after)
    WHERE state = 'pending'
"""

DOWNGRADE = """
DROP INDEX media_tenant_due
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
