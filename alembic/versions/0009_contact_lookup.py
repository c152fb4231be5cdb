"""Contact lookups that no other index can take: (number, identifier, tenant).

The indexer finds a batch's senders by (number, wa_id) and by (number, user_id) within the
tenant. With the unique indexes led by (number, tenant), a new deployment's planner (no column
statistics yet) valued `contacts_tenant` (tenant, number, ...) just as cheap and read every
contact of the number for each sender. Led by (number, identifier), with the tenant compared
as a filter, only these indexes serve the lookup, statistics or not. Uniqueness is unchanged.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
DROP INDEX contacts_wa_id;
CREATE UNIQUE INDEX contacts_wa_id ON contacts (phone_number_id, wa_id, tenant_id)
    WHERE wa_id IS NOT NULL;
DROP INDEX contacts_user_id;
CREATE UNIQUE INDEX contacts_user_id ON contacts (phone_number_id, user_id, tenant_id)
    WHERE user_id IS NOT NULL
"""

DOWNGRADE = """
DROP INDEX contacts_wa_id;
CREATE UNIQUE INDEX contacts_wa_id ON contacts (phone_number_id, tenant_id, wa_id)
    WHERE wa_id IS NOT NULL;
DROP INDEX contacts_user_id;
CREATE UNIQUE INDEX contacts_user_id ON contacts (phone_number_id, tenant_id, user_id)
    WHERE user_id IS NOT NULL
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
