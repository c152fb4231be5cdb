"""Messages by wamid alone: no index; sends in flight without a wamid: a small one.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# Every query that finds a message by its wamid names the number too (a wamid is unique per
# number, not across numbers: a gateway's ids are a tenant's to choose), so messages_wamid on
# (phone_number_id, wamid) serves them all, and messages_by_wamid cost every insert and every
# non-HOT update of a message (each send's claim, dispatch and acceptance) an entry. The one
# query it served by its NULLs, a web session's sends still waiting for the gateway's answer
# (websessions.sql send_in_flight, run for each echo of an unknown id, which the tenant's
# gateway chooses), gets a partial index that holds only such sends.
UPGRADE = """
DROP INDEX messages_by_wamid;
CREATE INDEX messages_in_flight ON messages (phone_number_id)
    WHERE direction = 'out' AND wamid IS NULL AND status IN ('sending', 'unknown');
"""

DOWNGRADE = """
DROP INDEX messages_in_flight;
CREATE INDEX messages_by_wamid ON messages (wamid);
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
