"""Outbound: the messages table as a durable outbox, pacing per number and per recipient,
templates cache and stored media.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE messages
    ADD COLUMN recipient          text,
    ADD COLUMN request            jsonb,
    ADD COLUMN idempotency_key    text,
    ADD COLUMN fallback_template  jsonb,
    ADD COLUMN attempts           integer NOT NULL DEFAULT 0,
    ADD COLUMN run_after          timestamptz,
    ADD COLUMN lease_token        uuid,
    ADD COLUMN locked_until       timestamptz,
    ADD COLUMN last_error         text,
    ADD COLUMN used_fallback      boolean NOT NULL DEFAULT false,
    ADD COLUMN accepted_at        timestamptz,
    -- Set (and committed) just before the request leaves: after a crash it tells a send that
    -- may have reached Meta (reported `unknown`) from one that surely did not (sent again).
    ADD COLUMN dispatched_at      timestamptz;

-- A 131047 from Meta closes the window here too, until the user writes again.
ALTER TABLE contacts ADD COLUMN window_closed_at timestamptz;

-- The order a message's status moves along; `failed` is handled apart (it always lands).
CREATE FUNCTION wa_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status
        WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'unknown' THEN 1
        WHEN 'accepted' THEN 2 WHEN 'sent' THEN 3 WHEN 'delivered' THEN 4
        WHEN 'read' THEN 5 WHEN 'played' THEN 6 ELSE -1 END
$$;
CREATE UNIQUE INDEX messages_idempotency ON messages (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_outbox ON messages (phone_number_id, run_after)
    WHERE direction = 'out' AND status = 'queued';
CREATE INDEX messages_sending ON messages (locked_until)
    WHERE direction = 'out' AND status = 'sending';

-- Per number: the next free send slot (virtual scheduling at the number's throughput), and an
-- adaptive factor that a 130429 from Meta lowers and time restores.
CREATE TABLE pacing (
    phone_number_id  text PRIMARY KEY REFERENCES numbers(phone_number_id) ON DELETE CASCADE,
    next_slot        timestamptz NOT NULL DEFAULT now(),
    factor           real NOT NULL DEFAULT 1.0 CHECK (factor > 0 AND factor <= 1),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Per (number, recipient): GCRA theoretical arrival time for Meta's pair rate.
CREATE TABLE pair_pacing (
    phone_number_id  text NOT NULL REFERENCES numbers(phone_number_id) ON DELETE CASCADE,
    recipient        text NOT NULL,
    tat              timestamptz NOT NULL,
    penalty_until    timestamptz,
    PRIMARY KEY (phone_number_id, recipient)
);

-- Templates as last fetched from the WABA: sends are checked against them before Meta is.
CREATE TABLE templates (
    waba_id     text NOT NULL,
    name        text NOT NULL,
    language    text NOT NULL,
    template_id text,
    status      text NOT NULL,
    category    text,
    parameter_format text,
    components  jsonb NOT NULL,
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (waba_id, name, language)
);

-- Inbound media downloaded by the worker, kept past Meta's 30 days.
CREATE TABLE media (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text NOT NULL,
    media_id         text NOT NULL,
    message_id       uuid REFERENCES messages(id) ON DELETE SET NULL,
    mime_type        text,
    sha256           text,
    size             integer,
    content          bytea,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'stored', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    run_after        timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (phone_number_id, media_id)
);
CREATE INDEX media_pending ON media (run_after) WHERE state = 'pending'
"""

DOWNGRADE = """
DROP TABLE media, templates, pair_pacing, pacing;
DROP FUNCTION wa_status_rank(text);
ALTER TABLE contacts DROP COLUMN window_closed_at;
DROP INDEX messages_idempotency;
DROP INDEX messages_outbox;
DROP INDEX messages_sending;
ALTER TABLE messages
    DROP COLUMN recipient, DROP COLUMN request, DROP COLUMN idempotency_key,
    DROP COLUMN fallback_template, DROP COLUMN attempts, DROP COLUMN run_after,
    DROP COLUMN lease_token, DROP COLUMN locked_until, DROP COLUMN last_error,
    DROP COLUMN used_fallback, DROP COLUMN accepted_at, DROP COLUMN dispatched_at
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
