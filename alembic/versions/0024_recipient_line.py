"""A recipient's line: the conversation messages a later one to the same recipient waits for.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# A conversation message is queued with run_after = created_at. One in flight, or one that went
# back to the queue (Meta asked to retry it, it was held back, paced for its recipient or late
# for its slot: its run_after moved past its created_at), holds the messages queued after it
# for the same recipient: a claim that takes one of those puts it back, due when the one ahead
# is (outbox.sql claim_messages, `held_until`). This index holds only such rows; the claim
# reads the nearest one ahead of each row it took, one probe each.
UPGRADE = """
CREATE INDEX messages_recipient_line ON messages (phone_number_id, recipient, created_at, seq)
    WHERE direction = 'out' AND priority = 0
      AND (status = 'sending' OR (status = 'queued' AND run_after > created_at));
"""

DOWNGRADE = """
DROP INDEX messages_recipient_line;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
