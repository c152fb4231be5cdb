"""Messages queued in one transaction leave in the order they were queued.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# A reply's file and its text are queued in one transaction, so they share created_at (the
# transaction's time) and nothing said which came first: the claim could send the text before
# the file. A sequence numbers every insert. The column is added without a default (no rewrite
# of the table, an instant change) and the default set after it, so rows written before this
# migration keep NULL: they are older than any new row and order among themselves as before.
UPGRADE = """
CREATE SEQUENCE messages_seq;
ALTER TABLE messages ADD COLUMN seq bigint;
ALTER TABLE messages ALTER COLUMN seq SET DEFAULT nextval('messages_seq');
ALTER SEQUENCE messages_seq OWNED BY messages.seq;
"""

DOWNGRADE = """
ALTER TABLE messages DROP COLUMN seq;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
