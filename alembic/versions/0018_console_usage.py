"""The console's usage chart: messages in and out per tenant and UTC day, counted once a day ends.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UPGRADE = """
-- Counting a month of a busy tenant's messages on every view reads them all: about 600 ms for
-- a million, even from an index. A day that has ended no longer changes (a message is dated by
-- its insert), so the usage page counts it once, on the first view that needs it, and keeps
-- the counts here (console_message_days in db/sql/console_business.sql); only the current day
-- is counted on each view. A day with no messages has its row too: counted, not missing.
CREATE TABLE message_days (
    tenant_id  uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    day        date NOT NULL,
    inbound    bigint NOT NULL,
    outbound   bigint NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
"""

DOWNGRADE = """
DROP TABLE message_days;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
