"""The assistant's HTTP tools: their header values sealed with the bot, and a log of every call.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = """
-- {"<tool>": {"<header>": "<value>"}} as JSON, sealed (bots.tool_secrets): tokens of the
-- business's own systems. bots.tools keeps the rest, header names only.
ALTER TABLE bots ADD COLUMN tool_secrets_enc bytea;

-- Each call the model made: what it asked and what came of it (never a header's value).
CREATE TABLE tool_calls (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text NOT NULL,
    contact_id       bigint REFERENCES contacts(id) ON DELETE SET NULL,
    reply_id         bigint,
    tool             text NOT NULL,
    arguments        jsonb NOT NULL,
    status           integer,
    error            text,
    duration_ms      integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tool_calls_number ON tool_calls (phone_number_id, id DESC);
CREATE INDEX tool_calls_age ON tool_calls (created_at);
"""

DOWNGRADE = """
DROP TABLE tool_calls;
ALTER TABLE bots DROP COLUMN tool_secrets_enc;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
