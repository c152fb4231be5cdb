"""The console: live-update notifications, unread counts and message search.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = """
-- Open console pages learn what changed from NOTIFY wa_console '<tenant>|<kind>|<number>'
-- (console/live.py); the payload names no message or contact, so a page only ever shows what
-- its own authorised request reads. One notification per number per statement for inserts
-- (a batch of 1,000 messages of one number costs one), PostgreSQL folds repeats in a transaction.
-- (Statements inside the bodies end mid-line: execute_script splits the script at ";" + newline.)
-- When someone last read the conversation in the console: later inbound messages are unread.
ALTER TABLE contacts ADD COLUMN read_at timestamptz;

CREATE FUNCTION console_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wa_console', changed.key)
       FROM (SELECT DISTINCT tenant_id::text || '|' || TG_ARGV[0] || '|' || phone_number_id AS key
               FROM inserted) changed; RETURN NULL; END $$;

CREATE FUNCTION console_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wa_console',
                      NEW.tenant_id::text || '|' || TG_ARGV[0] || '|' || NEW.phone_number_id)
    ; RETURN NULL; END $$;

CREATE TRIGGER messages_console_inserted AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION console_notify_inserted('message');
-- Only what a page shows: the outbox's own bookkeeping (leases, attempts) wakes nobody.
CREATE TRIGGER messages_console_changed AFTER UPDATE ON messages FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.media_text IS DISTINCT FROM NEW.media_text
          OR OLD.errors IS DISTINCT FROM NEW.errors OR OLD.wamid IS DISTINCT FROM NEW.wamid)
    EXECUTE FUNCTION console_notify_row('message');
CREATE TRIGGER contacts_console_changed AFTER UPDATE ON contacts FOR EACH ROW
    WHEN (OLD.bot_paused IS DISTINCT FROM NEW.bot_paused
          OR OLD.paused_until IS DISTINCT FROM NEW.paused_until
          OR OLD.name IS DISTINCT FROM NEW.name OR OLD.tags IS DISTINCT FROM NEW.tags
          OR OLD.notes IS DISTINCT FROM NEW.notes OR OLD.fields IS DISTINCT FROM NEW.fields
          OR OLD.read_at IS DISTINCT FROM NEW.read_at)
    EXECUTE FUNCTION console_notify_row('contact');
CREATE TRIGGER numbers_console_changed AFTER UPDATE ON numbers FOR EACH ROW
    WHEN (OLD.bot_enabled IS DISTINCT FROM NEW.bot_enabled
          OR OLD.quality_rating IS DISTINCT FROM NEW.quality_rating
          OR OLD.messaging_limit IS DISTINCT FROM NEW.messaging_limit
          OR OLD.removed_at IS DISTINCT FROM NEW.removed_at)
    EXECUTE FUNCTION console_notify_row('number');
CREATE TRIGGER web_sessions_console_inserted AFTER INSERT ON web_sessions FOR EACH ROW
    EXECUTE FUNCTION console_notify_row('number');
CREATE TRIGGER web_sessions_console_changed AFTER UPDATE ON web_sessions FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.qr_base64 IS DISTINCT FROM NEW.qr_base64
          OR OLD.pairing_code IS DISTINCT FROM NEW.pairing_code)
    EXECUTE FUNCTION console_notify_row('number');

-- The inbox's search by words of a message (its text, or what Gemini understood of its media).
-- Built-in full-text search ('simple': no stemming, any language), no extension needed.
CREATE INDEX messages_words ON messages
    USING gin (to_tsvector('simple', coalesce(text, '') || ' ' || coalesce(media_text, '')));
"""

DOWNGRADE = """
DROP INDEX messages_words;
DROP TRIGGER messages_console_inserted ON messages;
DROP TRIGGER messages_console_changed ON messages;
DROP TRIGGER contacts_console_changed ON contacts;
DROP TRIGGER numbers_console_changed ON numbers;
DROP TRIGGER web_sessions_console_inserted ON web_sessions;
DROP TRIGGER web_sessions_console_changed ON web_sessions;
ALTER TABLE contacts DROP COLUMN read_at;
DROP FUNCTION console_notify_row(), console_notify_inserted();
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
