"""Web-session numbers: a number can speak through a WhatsApp-Web gateway instead of Meta.

Such a number has no WABA; its row keeps the gateway's URL, and `access_token_enc` holds the
gateway's API key (sealed like a Meta token, so key rotation covers it). `web_sessions` is the
session's state as the gateway last told it, the QR code to scan, and the watchdog's next step:
rows, not sessions, so a thousand of them cost a process nothing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE numbers ALTER COLUMN waba_id DROP NOT NULL;
ALTER TABLE numbers ADD COLUMN gateway_url text;
-- One gateway instance per registration: a number registered again (by anyone) never reuses
-- the session of the registration before.
ALTER TABLE numbers ADD COLUMN gateway_instance text UNIQUE;
ALTER TABLE numbers ADD CONSTRAINT numbers_provider_shape CHECK (
    (provider = 'cloud' AND waba_id IS NOT NULL)
    OR (provider = 'websession' AND gateway_url IS NOT NULL AND gateway_instance IS NOT NULL));

CREATE TABLE web_sessions (
    phone_number_id   text PRIMARY KEY REFERENCES numbers(phone_number_id) ON DELETE CASCADE,
    tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- The gateway authenticates its webhooks with a secret we generated; only its hash is kept.
    secret_hash       bytea NOT NULL,
    state             text NOT NULL DEFAULT 'connecting'
                      CHECK (state IN ('connecting', 'qr', 'open', 'closed', 'refused',
                                       'logged_out')),
    reason            text,
    qr_base64         text,
    pairing_code      text,
    wuid              text,
    profile_name      text,
    state_at          timestamptz NOT NULL DEFAULT now(),
    -- The watchdog's next step: create the instance, connect it, check it, log out, delete.
    action            text NOT NULL DEFAULT 'create'
                      CHECK (action IN ('create', 'connect', 'check', 'logout', 'delete',
                                        'none')),
    due_at            timestamptz NOT NULL DEFAULT now(),
    attempts          integer NOT NULL DEFAULT 0,
    -- The session needs a new scan and the tenant's mail about it is not sent yet.
    mail_due          boolean NOT NULL DEFAULT false,
    locked_until      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX web_sessions_due ON web_sessions (due_at) WHERE action <> 'none' OR mail_due;
-- "A number another tenant already runs": the open sessions by the phone that scanned them.
CREATE INDEX web_sessions_wuid ON web_sessions (wuid) WHERE state = 'open';
"""

DOWNGRADE = """
DROP TABLE web_sessions;
ALTER TABLE numbers DROP CONSTRAINT numbers_provider_shape;
ALTER TABLE numbers DROP COLUMN gateway_url, DROP COLUMN gateway_instance;
DELETE FROM numbers WHERE waba_id IS NULL;
ALTER TABLE numbers ALTER COLUMN waba_id SET NOT NULL;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
