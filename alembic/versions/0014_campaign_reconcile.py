"""Campaign sends whose outcome is unknown are settled by Meta's own statuses.

Every campaign send carries `biz_opaque_callback_data` naming its campaign and line; Meta
echoes it in the send's statuses. A send left `unknown` by a worker that died mid-request is
found by that echo (Meta has it: its wamid and status are taken from the echo) or, when no
status names it within the grace, sent again (Meta never had it).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE INDEX statuses_callback ON statuses (phone_number_id, biz_opaque_callback_data)
    WHERE biz_opaque_callback_data IS NOT NULL;
CREATE INDEX messages_campaign_unknown ON messages (run_after)
    WHERE status = 'unknown' AND broadcast_id IS NOT NULL;
"""

DOWNGRADE = """
DROP INDEX messages_campaign_unknown;
DROP INDEX statuses_callback;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
