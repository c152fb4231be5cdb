"""Event forwarding: each tenant's own webhook and the durable queue of forwarded events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
-- A tenant's callback: where we POST its events and the secret that signs them (sealed).
CREATE TABLE tenant_webhooks (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    url         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    events      text[] NOT NULL CHECK (cardinality(events) > 0),
    secret_enc  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per event to forward; its id is the X-WA-Cloud-Delivery header, the same on every
-- attempt. dedup_key makes an event indexed twice (a redelivered webhook) one forward.
CREATE TABLE forwards (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    event         text NOT NULL,
    payload       jsonb NOT NULL,
    dedup_key     bytea NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    run_after     timestamptz NOT NULL DEFAULT now(),
    lease_token   uuid,
    locked_until  timestamptz,
    last_status   integer,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    UNIQUE (tenant_id, dedup_key)
);
CREATE INDEX forwards_pending ON forwards (run_after) WHERE state = 'pending';
CREATE INDEX forwards_tenant ON forwards (tenant_id, created_at DESC, id DESC)
"""

DOWNGRADE = """
DROP TABLE forwards, tenant_webhooks
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
