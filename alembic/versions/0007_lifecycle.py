"""Data lifecycle: revocable status links, media retention per number, retention indexes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
-- Status links carry the generation they were issued under; a new invitation bumps it, so
-- every older link stops opening (links are otherwise stateless signed tokens).
ALTER TABLE tenants ADD COLUMN link_generation integer NOT NULL DEFAULT 0;

-- Downloaded media is kept this long, then deleted by the retention job. Meta keeps its own
-- copy 30 days; 90 gives a business a quarter to look back without keeping it forever.
ALTER TABLE numbers ADD COLUMN media_retention_days integer NOT NULL DEFAULT 90
    CHECK (media_retention_days BETWEEN 1 AND 3650);

-- Webhook bodies the retention job has still to clear, oldest first. Pending rows are never in
-- it, so ingest adds no index entry; a cleared row (empty body) leaves it.
CREATE INDEX deliveries_retention ON deliveries (received_at)
    WHERE state <> 'pending' AND body <> ''::bytea;
-- Finished forwards, oldest first (the retention job deletes them).
CREATE INDEX forwards_retention ON forwards (created_at) WHERE state <> 'pending';
-- A number's finished downloads, oldest first: its retention is a range per number.
CREATE INDEX media_retention ON media (phone_number_id, created_at) WHERE state <> 'pending';
-- Deleting a message makes PostgreSQL clear media.message_id where it points at it: without
-- this index that is a scan of all media per deleted message (a tenant's deletion).
CREATE INDEX media_message ON media (message_id)
"""

DOWNGRADE = """
DROP INDEX media_message;
DROP INDEX media_retention;
DROP INDEX forwards_retention;
DROP INDEX deliveries_retention;
ALTER TABLE numbers DROP COLUMN media_retention_days;
ALTER TABLE tenants DROP COLUMN link_generation
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
