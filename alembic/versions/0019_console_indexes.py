"""The console's counts read from two indexes alone (index-only scans), not from the messages.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# Same names and keys as before (every query and plan that used them still does), each with the
# columns its counting queries read besides the key, so those never visit the table. Measured
# with `wa-cloud bench console` (10,000 conversations, 1,000,000 messages, two cores).
# Both new indexes are built beside the old ones before either is dropped: the builds block
# writes to messages (about 5 s a million messages here) but not reads. The script is one
# transaction, so the first DROP's exclusive lock lasts to the commit: the swaps come last.
UPGRADE = """
-- A contact's first and last message times and its counts in and out (contact_detail: the
-- console's thread page and contact panel, GET /v1/contacts/{contact}) and the inbox's unread
-- counts: a conversation of 10,000 messages read 9,000 heap pages, 50 ms; now 5 ms.
CREATE INDEX messages_contact_covering
    ON messages (contact_id, coalesce(sent_at, created_at) DESC, id DESC)
    INCLUDE (tenant_id, direction, sent_at, created_at);
-- A tenant's messages per day in and out (the console's usage chart, console_message_days,
-- and the status page, page_message_counts): the first view of a month of a million
-- messages took 6 s, now 0.3 s; today's count on every view, 15 ms, is now 2 ms.
CREATE INDEX messages_tenant_day_covering ON messages (tenant_id, created_at)
    INCLUDE (direction, phone_number_id);
-- The swaps.
DROP INDEX messages_tenant_day;
ALTER INDEX messages_tenant_day_covering RENAME TO messages_tenant_day;
DROP INDEX messages_contact;
ALTER INDEX messages_contact_covering RENAME TO messages_contact;
"""

DOWNGRADE = """
CREATE INDEX messages_tenant_day_plain ON messages (tenant_id, created_at);
CREATE INDEX messages_contact_plain
    ON messages (contact_id, coalesce(sent_at, created_at) DESC, id DESC);
DROP INDEX messages_tenant_day;
ALTER INDEX messages_tenant_day_plain RENAME TO messages_tenant_day;
DROP INDEX messages_contact;
ALTER INDEX messages_contact_plain RENAME TO messages_contact;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
