"""Campaign sends whose outcome is unknown are settled by Meta's own statuses; a campaign's
feed reads only what it needs.

Every campaign send carries `biz_opaque_callback_data` naming its campaign and line; Meta
echoes it in the send's statuses. A send left `unknown` by a worker that died mid-request is
found by that echo (Meta has it: its wamid and status are taken from the echo) or, when no
status names it within the grace, sent again (Meta never had it).

Each feed of a running campaign looks at its last finished sends, its 131050 refusals and what
it has queued, and the runner feeds a number's oldest campaign first: each has an index, so a
feed late in a campaign of 100,000 reads a few hundred rows, not the campaign.

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
DROP INDEX messages_broadcast;
CREATE INDEX messages_broadcast ON messages (broadcast_id, created_at DESC)
    WHERE broadcast_id IS NOT NULL;
CREATE INDEX messages_broadcast_queued ON messages (broadcast_id)
    WHERE status = 'queued' AND broadcast_id IS NOT NULL;
CREATE INDEX messages_broadcast_failed ON messages (broadcast_id)
    WHERE status = 'failed' AND broadcast_id IS NOT NULL;
CREATE INDEX broadcasts_line ON broadcasts (phone_number_id, created_at)
    WHERE status IN ('scheduled', 'running');
"""

DOWNGRADE = """
DROP INDEX broadcasts_line;
DROP INDEX messages_broadcast_failed;
DROP INDEX messages_broadcast_queued;
DROP INDEX messages_broadcast;
CREATE INDEX messages_broadcast ON messages (broadcast_id) WHERE broadcast_id IS NOT NULL;
DROP INDEX messages_campaign_unknown;
DROP INDEX statuses_callback;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
