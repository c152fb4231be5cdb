"""The assistant at work: a files library it can send, contact memory, follow-ups and reminders.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = """
-- The bot configuration's new parts (ai/fields.py, ai/followup_rules.py).
ALTER TABLE bots ADD COLUMN extract_fields jsonb NOT NULL DEFAULT '[]',
                 ADD COLUMN follow_ups jsonb NOT NULL DEFAULT '[]';
-- Tokens of the new model calls: fields extracted after a reply, follow-ups written.
ALTER TABLE token_usage DROP CONSTRAINT token_usage_feature_check,
    ADD CONSTRAINT token_usage_feature_check CHECK (
        feature IN ('reply', 'transcription', 'vision', 'speech', 'extraction', 'follow_up'));

-- == files library ==

-- == contact memory ==

-- == follow-ups and reminders ==
"""

DOWNGRADE = """
-- == follow-ups and reminders ==

-- == contact memory ==

-- == files library ==

DELETE FROM token_usage WHERE feature IN ('extraction', 'follow_up');
ALTER TABLE token_usage DROP CONSTRAINT token_usage_feature_check,
    ADD CONSTRAINT token_usage_feature_check CHECK (
        feature IN ('reply', 'transcription', 'vision', 'speech'));
ALTER TABLE bots DROP COLUMN extract_fields, DROP COLUMN follow_ups;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
