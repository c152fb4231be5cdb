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
-- What the assistant may send (api/files.py, ai/files.py): a number's files, kept here and
-- uploaded to Meta when first sent; Meta's media id is kept and reused while Meta keeps it.
CREATE TABLE bot_files (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text NOT NULL,
    title            text NOT NULL,
    description      text NOT NULL DEFAULT '',
    kind             text NOT NULL CHECK (kind IN ('image', 'document', 'video', 'audio')),
    mime_type        text NOT NULL,
    filename         text NOT NULL,
    size             integer NOT NULL,
    sha256           text NOT NULL,
    content          bytea NOT NULL,
    media_id         text,
    uploaded_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
-- Media is compressed already: stored out of line as it is, not pglz'd again.
ALTER TABLE bot_files ALTER COLUMN content SET STORAGE EXTERNAL;
-- The model names a file by its title: one per number, whatever its case.
CREATE UNIQUE INDEX bot_files_title ON bot_files (tenant_id, phone_number_id, lower(title));

-- == contact memory ==
-- A contact's CRM data (api/contacts.py, ai/memory.py): tags (normalised: lower case, trimmed),
-- notes, and fields by name, each {"value", "source_message_id", "updated_at", "by"}.
ALTER TABLE contacts ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
                     ADD COLUMN notes text,
                     ADD COLUMN fields jsonb NOT NULL DEFAULT '{}';
-- `?tag=` (tags @> ...) and `?field.<name>=` (fields @> {"<name>": {"value": ...}}).
CREATE INDEX contacts_tags ON contacts USING gin (tags);
CREATE INDEX contacts_fields ON contacts USING gin (fields jsonb_path_ops);

-- == follow-ups and reminders ==
-- What will be written to a contact later (ai/followup_rules.py schedules the assistant's
-- follow-ups, api/followups.py the reminders, ai/followups.py sends both): one row each, so a
-- schedule survives restarts and every outcome is shown. `claims` fences a send's finish.
CREATE TABLE follow_ups (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text NOT NULL,
    contact_id       bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('follow_up', 'reminder')),
    rule_index       integer,
    attempt          integer NOT NULL DEFAULT 1,
    max_attempts     integer NOT NULL DEFAULT 1,
    due_at           timestamptz NOT NULL,
    text             text,
    template         jsonb,
    state            text NOT NULL DEFAULT 'scheduled' CHECK (
                         state IN ('scheduled', 'sending', 'sent', 'cancelled', 'skipped',
                                   'failed')),
    reason           text,
    message_id       uuid,
    claims           integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CHECK ((kind = 'follow_up') = (rule_index IS NOT NULL))
);
-- The sender's claims: rows due, and rows whose worker died (lease ended).
CREATE INDEX follow_ups_due ON follow_ups (due_at) WHERE state = 'scheduled';
CREATE INDEX follow_ups_leased ON follow_ups (locked_until) WHERE state = 'sending';
-- One pending follow-up per rule and conversation (a newer message of ours replaces it); also
-- what an inbound message cancels.
CREATE UNIQUE INDEX follow_ups_pending ON follow_ups (contact_id, rule_index)
    WHERE kind = 'follow_up' AND state IN ('scheduled', 'sending');
-- A contact's rows, newest first (and the contacts foreign key).
CREATE INDEX follow_ups_contact ON follow_ups (contact_id, id DESC);
-- Retention: finished rows go with the raw bodies.
CREATE INDEX follow_ups_finished ON follow_ups (finished_at) WHERE finished_at IS NOT NULL;
-- A model-written follow-up is debited once, like a reply.
ALTER TABLE credit_ledger ADD COLUMN follow_up_id bigint UNIQUE;
"""

DOWNGRADE = """
-- == follow-ups and reminders ==
ALTER TABLE credit_ledger DROP COLUMN follow_up_id;
DROP TABLE follow_ups;

-- == contact memory ==
DROP INDEX contacts_fields;
DROP INDEX contacts_tags;
ALTER TABLE contacts DROP COLUMN tags, DROP COLUMN notes, DROP COLUMN fields;

-- == files library ==
DROP TABLE bot_files;

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
