"""Foundation: tenants, numbers, apps, raw deliveries, the index of messages, contacts, statuses.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email       text,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 of a 256-bit random key: the key itself is shown once.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key_hash    bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- A tenant's own Meta app: its webhooks arrive at /webhook/apps/{app_id}.
CREATE TABLE apps (
    app_id            text PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    app_secret_enc    bytea NOT NULL,
    verify_token_enc  bytea NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX apps_tenant ON apps (tenant_id);

CREATE TABLE numbers (
    phone_number_id       text PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    waba_id               text NOT NULL,
    display_phone_number  text,
    verified_name         text,
    quality_rating        text,
    name_status           text,
    app_id                text,
    provider              text NOT NULL DEFAULT 'cloud' CHECK (provider IN ('cloud', 'websession')),
    access_token_enc      bytea,
    pin_enc               bytea,
    bot_enabled           boolean NOT NULL DEFAULT true,
    throughput_mps        integer NOT NULL DEFAULT 80 CHECK (throughput_mps BETWEEN 1 AND 1000),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX numbers_tenant ON numbers (tenant_id);

-- Every signed webhook body, exactly as received, committed before Meta gets its 200.
-- The table is also the processing queue: workers claim pending rows with SKIP LOCKED.
CREATE TABLE deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at      timestamptz NOT NULL DEFAULT now(),
    source           text NOT NULL,
    body             bytea NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'processed', 'quarantined')),
    attempts         integer NOT NULL DEFAULT 0,
    run_after        timestamptz NOT NULL DEFAULT now(),
    lease_token      uuid,
    locked_until     timestamptz,
    last_error       text,
    processed_at     timestamptz
);
CREATE INDEX deliveries_pending ON deliveries (run_after, id) WHERE state = 'pending';

CREATE TABLE quarantine (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  bigint NOT NULL UNIQUE REFERENCES deliveries(id) ON DELETE CASCADE,
    code         text NOT NULL,
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- A contact is keyed by wa_id when Meta gives one and by its BSUID user_id too.
CREATE TABLE contacts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text NOT NULL REFERENCES numbers(phone_number_id) ON DELETE CASCADE,
    wa_id            text,
    user_id          text,
    parent_user_id   text,
    username         text,
    name             text,
    last_inbound_at  timestamptz,
    bot_paused       boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (wa_id IS NOT NULL OR user_id IS NOT NULL)
);
CREATE UNIQUE INDEX contacts_wa_id ON contacts (phone_number_id, wa_id) WHERE wa_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_user_id ON contacts (phone_number_id, user_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX contacts_tenant ON contacts (tenant_id, phone_number_id, last_inbound_at DESC);

CREATE TABLE messages (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text NOT NULL REFERENCES numbers(phone_number_id) ON DELETE CASCADE,
    contact_id       bigint REFERENCES contacts(id) ON DELETE SET NULL,
    wamid            text,
    direction        text NOT NULL CHECK (direction IN ('in', 'out')),
    type             text NOT NULL,
    text             text,
    payload          jsonb NOT NULL,
    context_wamid    text,
    status           text NOT NULL,
    errors           jsonb NOT NULL DEFAULT '[]',
    pricing          jsonb,
    sent_at          timestamptz,
    status_at        timestamptz,
    delivery_id      bigint REFERENCES deliveries(id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX messages_wamid ON messages (phone_number_id, wamid) WHERE wamid IS NOT NULL;
CREATE INDEX messages_contact
    ON messages (contact_id, (coalesce(sent_at, created_at)) DESC, id DESC);
CREATE INDEX messages_by_wamid ON messages (wamid);

CREATE TABLE statuses (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id     text NOT NULL,
    wamid               text NOT NULL,
    status              text NOT NULL,
    occurred_at         timestamptz,
    recipient_id        text,
    recipient_user_id   text,
    errors              jsonb NOT NULL DEFAULT '[]',
    pricing             jsonb,
    conversation        jsonb,
    biz_opaque_callback_data text,
    payload             jsonb NOT NULL,
    delivery_id         bigint REFERENCES deliveries(id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (wamid, status)
);
CREATE INDEX statuses_tenant ON statuses (tenant_id, created_at DESC);

-- Everything else Meta tells us (template, account, quality updates, out-of-band errors) and
-- changes for numbers no tenant owns (orphaned). dedup_key makes redelivery harmless.
CREATE TABLE events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id  text,
    waba_id          text,
    field            text NOT NULL,
    kind             text NOT NULL,
    orphaned         boolean NOT NULL DEFAULT false,
    payload          jsonb NOT NULL,
    dedup_key        bytea NOT NULL UNIQUE,
    delivery_id      bigint REFERENCES deliveries(id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_tenant ON events (tenant_id, created_at DESC);
CREATE INDEX events_orphaned ON events (created_at DESC) WHERE orphaned;
"""

DOWNGRADE = """
DROP TABLE events, statuses, messages, contacts, quarantine, deliveries, numbers, apps,
    api_keys, tenants CASCADE;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
