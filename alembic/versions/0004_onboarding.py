"""Onboarding: what Meta tells us about a number when it is registered.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE numbers
    ADD COLUMN code_verification_status  text,
    ADD COLUMN throughput_level          text,
    ADD COLUMN messaging_limit           text,
    ADD COLUMN registered                boolean NOT NULL DEFAULT false,
    ADD COLUMN subscribed                boolean NOT NULL DEFAULT false,
    ADD COLUMN verified_at               timestamptz,
    -- DELETE keeps the number's history but forgets its secrets; it can be registered again.
    ADD COLUMN removed_at                timestamptz
"""

DOWNGRADE = """
ALTER TABLE numbers
    DROP COLUMN code_verification_status, DROP COLUMN throughput_level,
    DROP COLUMN messaging_limit, DROP COLUMN registered, DROP COLUMN subscribed,
    DROP COLUMN verified_at, DROP COLUMN removed_at
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
