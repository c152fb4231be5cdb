"""A recipient's put-back conversation messages: the line a later message waits behind.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# A conversation message is queued with run_after = created_at; one Meta asked to retry, one
# held back behind such a retry, or one too late for its slot goes back with a later run_after.
# Until it has gone, a message queued after it for the same recipient must not be claimed
# (db/sql/fragments/claimable.sql). This index holds only such put-back rows: nearly always
# empty, probed once for every row a claim considers.
UPGRADE = """
CREATE INDEX messages_put_back ON messages (phone_number_id, recipient, created_at)
    WHERE direction = 'out' AND priority = 0 AND status IN ('queued', 'sending')
      AND run_after > created_at;
"""

DOWNGRADE = """
DROP INDEX messages_put_back;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
