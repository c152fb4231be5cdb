"""The AI assistant: each number's bot configuration, reply jobs, pauses, credits and usage.

A reply job is one conversation's next answer. The indexer schedules it in the transaction that
stores the message (at most one pending job per contact: later messages of a burst push it back
and join it through `messages.reply_id`), and the reply consumer answers the burst once, queuing
the answer and debiting the credits in the transaction that finishes the job.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = """
-- A number's assistant is off until its configuration (or PATCH bot_enabled) turns it on; no
-- bot ever answered before this revision, so every existing number starts off as well.
ALTER TABLE numbers ALTER COLUMN bot_enabled SET DEFAULT false;
UPDATE numbers SET bot_enabled = false;

-- The configuration of a number's assistant (absent: the defaults). `enabled` is
-- numbers.bot_enabled: one switch. Keyed by number and tenant, so a number another tenant
-- registers later never runs the previous owner's assistant (or its model key).
CREATE TABLE bots (
    phone_number_id         text PRIMARY KEY
                            REFERENCES numbers(phone_number_id) ON DELETE CASCADE,
    tenant_id               uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    instructions            text NOT NULL,
    model                   text,
    base_url                text,
    api_key_enc             bytea,
    api                     text CHECK (api IN ('chat', 'responses')),
    reasoning_effort        text,
    temperature             real NOT NULL DEFAULT 0.7,
    max_output_tokens       integer NOT NULL DEFAULT 400,
    history_turns           integer NOT NULL DEFAULT 20,
    debounce_seconds        real NOT NULL DEFAULT 1.5 CHECK (debounce_seconds >= 0),
    timezone                text NOT NULL DEFAULT 'UTC',
    owner_phones            text[] NOT NULL DEFAULT '{}',
    credits_per_reply       integer NOT NULL DEFAULT 2 CHECK (credits_per_reply >= 0),
    retention_hours         integer NOT NULL DEFAULT 24 CHECK (retention_hours >= 0),
    fallback_text           text,
    out_of_credits_text     text,
    media_unavailable_text  text,
    voice_replies           boolean NOT NULL DEFAULT false,
    human_takeover_minutes  real NOT NULL DEFAULT 30 CHECK (human_takeover_minutes >= 0),
    tools                   jsonb NOT NULL DEFAULT '[]',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bots_tenant ON bots (tenant_id);

-- A conversation's pause: bot_paused with an end (NULL: until resumed) and who asked.
ALTER TABLE contacts ADD COLUMN paused_until timestamptz, ADD COLUMN paused_by text;

-- The job that answers a burst: the messages it answers carry its id.
CREATE TABLE replies (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text NOT NULL REFERENCES numbers(phone_number_id) ON DELETE CASCADE,
    contact_id       bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'running', 'done', 'failed')),
    due_at           timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    outcome          text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- One burst open per conversation: a later message joins it (and pushes it back).
CREATE UNIQUE INDEX replies_open ON replies (contact_id) WHERE state = 'pending';
-- What the consumer claims: pending ones when due, running ones when their lease ran out.
CREATE INDEX replies_due
    ON replies ((CASE WHEN state = 'pending' THEN due_at ELSE locked_until END))
    WHERE state IN ('pending', 'running');
CREATE INDEX replies_finished ON replies (finished_at) WHERE state IN ('done', 'failed');

ALTER TABLE messages
    ADD COLUMN reply_id     bigint,
    -- What Gemini understood of a message's media: a transcript, a description, a summary.
    ADD COLUMN media_text   text,
    -- Who wrote an outbound message: 'bot', 'human' (the API) or NULL (before this revision).
    ADD COLUMN author       text,
    -- Set when retention cleared its text (the id and counts stay).
    ADD COLUMN purged_at    timestamptz;
CREATE INDEX messages_reply ON messages (reply_id) WHERE reply_id IS NOT NULL;
-- Retention walks each number's messages oldest first.
CREATE INDEX messages_retention ON messages (phone_number_id, created_at) WHERE purged_at IS NULL;

-- Credits: a balance per tenant, every movement a ledger row.
ALTER TABLE tenants ADD COLUMN credits_balance bigint NOT NULL DEFAULT 0;
CREATE TABLE credit_ledger (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    amount           bigint NOT NULL,
    balance_before   bigint NOT NULL,
    balance_after    bigint NOT NULL,
    reason           text NOT NULL,
    phone_number_id  text,
    reply_id         bigint UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_ledger_tenant ON credit_ledger (tenant_id, id DESC);

-- Model tokens per tenant, number, model, feature and day.
CREATE TABLE token_usage (
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text NOT NULL,
    model            text NOT NULL,
    feature          text NOT NULL
                     CHECK (feature IN ('reply', 'transcription', 'vision', 'speech')),
    day              date NOT NULL,
    calls            integer NOT NULL DEFAULT 0,
    input_tokens     bigint NOT NULL DEFAULT 0,
    output_tokens    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, phone_number_id, model, feature, day)
);
"""

DOWNGRADE = """
DROP TABLE token_usage, credit_ledger, replies, bots;
ALTER TABLE tenants DROP COLUMN credits_balance;
DROP INDEX messages_retention;
DROP INDEX messages_reply;
ALTER TABLE messages DROP COLUMN reply_id, DROP COLUMN media_text, DROP COLUMN author,
    DROP COLUMN purged_at;
ALTER TABLE contacts DROP COLUMN paused_until, DROP COLUMN paused_by;
ALTER TABLE numbers ALTER COLUMN bot_enabled SET DEFAULT true;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
