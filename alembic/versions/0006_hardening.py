"""Hardening: indexes for the hot tenant queries, flagged numbers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
-- The status page counts a tenant's messages of the day.
CREATE INDEX messages_tenant_day ON messages (tenant_id, created_at);
-- GET /v1/media/{id}: a tenant's media by Meta's id.
CREATE INDEX media_tenant ON media (tenant_id, media_id);
-- GET /v1/contacts: a number's contacts, newest id first, a page at a time.
CREATE INDEX contacts_number_id ON contacts (phone_number_id, id);
-- An orphaned event keeps the source that sent it and why it was not indexed, so a number
-- registered later adopts only what its own source said about it.
ALTER TABLE events ADD COLUMN source text, ADD COLUMN orphan_reason text;
CREATE INDEX events_orphaned_number ON events (phone_number_id, created_at) WHERE orphaned;
-- A number that cannot send (its sealed token does not open, or sending it crashed): its
-- claimed messages fail with the reason, the sender skips it for a while, the API says why.
ALTER TABLE numbers ADD COLUMN flagged_reason text, ADD COLUMN flagged_at timestamptz;
-- A status is unique per number, not across numbers: a body from one tenant's own app naming
-- another tenant's wamid must not take the slot Meta's real status for it needs.
ALTER TABLE statuses DROP CONSTRAINT statuses_wamid_status_key;
CREATE UNIQUE INDEX statuses_number_wamid ON statuses (phone_number_id, wamid, status);
-- A number can move to another tenant once its owner removed it: contacts are the tenant's
-- (the new owner starts with none of the old owner's), and a number row that goes with its
-- tenant no longer takes another tenant's history of that number with it.
DROP INDEX contacts_wa_id;
DROP INDEX contacts_user_id;
CREATE UNIQUE INDEX contacts_wa_id ON contacts (phone_number_id, tenant_id, wa_id)
    WHERE wa_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_user_id ON contacts (phone_number_id, tenant_id, user_id)
    WHERE user_id IS NOT NULL;
ALTER TABLE contacts DROP CONSTRAINT contacts_phone_number_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_phone_number_id_fkey;
"""

DOWNGRADE = """
ALTER TABLE messages ADD CONSTRAINT messages_phone_number_id_fkey
    FOREIGN KEY (phone_number_id) REFERENCES numbers (phone_number_id) ON DELETE CASCADE;
ALTER TABLE contacts ADD CONSTRAINT contacts_phone_number_id_fkey
    FOREIGN KEY (phone_number_id) REFERENCES numbers (phone_number_id) ON DELETE CASCADE;
DROP INDEX contacts_user_id;
DROP INDEX contacts_wa_id;
CREATE UNIQUE INDEX contacts_wa_id ON contacts (phone_number_id, wa_id) WHERE wa_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_user_id ON contacts (phone_number_id, user_id)
    WHERE user_id IS NOT NULL;
DROP INDEX statuses_number_wamid;
ALTER TABLE statuses ADD CONSTRAINT statuses_wamid_status_key UNIQUE (wamid, status);
ALTER TABLE numbers DROP COLUMN flagged_reason, DROP COLUMN flagged_at;
DROP INDEX events_orphaned_number;
ALTER TABLE events DROP COLUMN source, DROP COLUMN orphan_reason;
DROP INDEX contacts_number_id;
DROP INDEX media_tenant;
DROP INDEX messages_tenant_day
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
