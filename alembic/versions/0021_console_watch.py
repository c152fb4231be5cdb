"""Console notifications only for tenants whose console is open.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# PostgreSQL serialises every transaction that sends a NOTIFY, from just before its commit until
# after it, fsync included. The console's triggers (0017) made every write of a message, a
# contact or a number one of those, for every tenant, console open or not: one tenant's sends
# queued everyone's commits. Now an open console page says so here (console/live.py refreshes
# its row while pages are open; a row past `until` is no one's), and the triggers notify only
# for a tenant someone watches, or for every tenant while the operator watches (tenant NULL).
# (Statements inside the bodies end mid-line: execute_script splits the script at ";" + newline.)
UPGRADE = """
CREATE TABLE console_watch (
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
    until timestamptz NOT NULL
);
CREATE UNIQUE INDEX console_watch_scope
    ON console_watch ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)));

CREATE FUNCTION console_watched(tenant uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM console_watch
                    WHERE coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)
                          IN (tenant, '00000000-0000-0000-0000-000000000000'::uuid)
                      AND until > now()) $$;

CREATE OR REPLACE FUNCTION console_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wa_console', d.tenant_id::text || '|' || TG_ARGV[0] || '|' || d.number)
       FROM (SELECT DISTINCT tenant_id, phone_number_id AS number FROM inserted) d
      WHERE console_watched(d.tenant_id); RETURN NULL; END $$;

CREATE OR REPLACE FUNCTION console_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF console_watched(NEW.tenant_id) THEN PERFORM pg_notify('wa_console',
        NEW.tenant_id::text || '|' || TG_ARGV[0] || '|' || NEW.phone_number_id); END IF
    ; RETURN NULL; END $$;
"""

DOWNGRADE = """
CREATE OR REPLACE FUNCTION console_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wa_console', changed.key)
       FROM (SELECT DISTINCT tenant_id::text || '|' || TG_ARGV[0] || '|' || phone_number_id AS key
               FROM inserted) changed; RETURN NULL; END $$;

CREATE OR REPLACE FUNCTION console_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wa_console',
                      NEW.tenant_id::text || '|' || TG_ARGV[0] || '|' || NEW.phone_number_id)
    ; RETURN NULL; END $$;

DROP FUNCTION console_watched(uuid);
DROP TABLE console_watch;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
