"""Campaigns: broadcasts and their recipients, opt-outs, a number's messaging limit, template
status as Meta's webhooks tell it, and bulk sends that yield to conversations.

A broadcast's recipients are rows; the campaign runner moves a few seconds of them at a time
into the outbox (`messages.broadcast_id`, `priority` 1), so pause and cancel act at once and a
reply (priority 0) is always claimed before a campaign's next message.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE templates ADD COLUMN rejected_reason text;
ALTER TABLE templates ADD COLUMN quality text;
-- Meta's news about a template (its status after a review or an edit) may come with new
-- components: the stored copy is fetched again before the next send is checked against it.
ALTER TABLE templates ADD COLUMN stale boolean NOT NULL DEFAULT false;

-- numbers.messaging_limit (since 0004) is now kept: Meta's tier (TIER_250 ... TIER_UNLIMITED)
-- from the number's fields and from phone_number_quality_update; NULL: the lowest is assumed.
-- The words that opt a contact out when they are a whole message; NULL: the defaults.
ALTER TABLE numbers ADD COLUMN opt_out_words text[];

CREATE TABLE opt_outs (
    phone_number_id  text NOT NULL REFERENCES numbers(phone_number_id) ON DELETE CASCADE,
    recipient        text NOT NULL,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    source           text NOT NULL CHECK (source IN ('keyword', 'user_preferences', 'api',
                                                     'meta_131050')),
    detail           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (phone_number_id, recipient)
);
CREATE INDEX opt_outs_tenant ON opt_outs (tenant_id);

CREATE TABLE broadcasts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text NOT NULL REFERENCES numbers(phone_number_id) ON DELETE CASCADE,
    name             text NOT NULL,
    -- The template ({"name", "language"}) or the free-form send shape every recipient gets.
    template         jsonb,
    message          jsonb,
    -- MARKETING, UTILITY, AUTHENTICATION (the template's) or SERVICE (free-form).
    category         text NOT NULL,
    status           text NOT NULL DEFAULT 'scheduled'
                     CHECK (status IN ('scheduled', 'running', 'paused', 'done', 'cancelled')),
    paused_reason    text,
    -- Why a running campaign is waiting (the messaging limit reached): not a pause.
    held_reason      text,
    run_at           timestamptz NOT NULL DEFAULT now(),
    estimate         jsonb NOT NULL,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CHECK ((template IS NULL) <> (message IS NULL))
);
CREATE INDEX broadcasts_tenant ON broadcasts (tenant_id, created_at DESC);
CREATE INDEX broadcasts_due ON broadcasts (run_at) WHERE status IN ('scheduled', 'running');

CREATE TABLE broadcast_recipients (
    broadcast_id     uuid NOT NULL REFERENCES broadcasts(id) ON DELETE CASCADE,
    recipient        text NOT NULL,
    line             integer NOT NULL,
    variables        jsonb,
    -- pending: not in the outbox yet; queued: its message row exists; skipped: never sent.
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'queued', 'skipped')),
    reason           text,
    message_id       uuid REFERENCES messages(id) ON DELETE SET NULL,
    PRIMARY KEY (broadcast_id, line)
);
-- A recipient is sent at most once per campaign: the lines kept as duplicates or invalid are
-- only there to be reported.
CREATE UNIQUE INDEX broadcast_recipients_once ON broadcast_recipients (broadcast_id, recipient)
    WHERE reason IS NULL OR reason NOT IN ('duplicate', 'invalid_number');
CREATE INDEX broadcast_recipients_pending ON broadcast_recipients (broadcast_id, line)
    WHERE state = 'pending';
CREATE INDEX broadcast_recipients_message ON broadcast_recipients (message_id)
    WHERE message_id IS NOT NULL;

ALTER TABLE messages ADD COLUMN broadcast_id uuid REFERENCES broadcasts(id) ON DELETE SET NULL;
-- 0: conversations (API sends, replies); 1: campaigns, claimed only when no 0 is due.
ALTER TABLE messages ADD COLUMN priority smallint NOT NULL DEFAULT 0;
CREATE INDEX messages_broadcast ON messages (broadcast_id) WHERE broadcast_id IS NOT NULL;
"""

DOWNGRADE = """
DROP INDEX messages_broadcast;
ALTER TABLE messages DROP COLUMN priority, DROP COLUMN broadcast_id;
DROP TABLE broadcast_recipients;
DROP TABLE broadcasts;
DROP TABLE opt_outs;
ALTER TABLE numbers DROP COLUMN opt_out_words;
ALTER TABLE templates DROP COLUMN rejected_reason, DROP COLUMN quality, DROP COLUMN stale;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
