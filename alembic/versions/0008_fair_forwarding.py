"""Fair forwarding: each tenant's pending forwards in due order.

Claims walk the tenants that have pending forwards and take a few due rows of each (at most
the tenant's bound), so one tenant's backlog never fills every slot. This index makes both an
index probe per tenant instead of a read of every due row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = """
-- Pending rows only: finished ones (most of the table) never enter it.
CREATE INDEX forwards_tenant_due ON forwards (tenant_id, run_after) WHERE state = 'pending'
"""

DOWNGRADE = """
DROP INDEX forwards_tenant_due
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
