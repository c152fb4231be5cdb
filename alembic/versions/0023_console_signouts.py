"""Console sessions signed out: a copied cookie dies with the sign-out.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from wa_cloud.db.migrations import execute_script

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# A console session is a signed cookie that holds no secret; signing out deletes it from that
# browser only. A copy (another browser, a stolen one) stayed valid for the rest of its 12
# hours. Each sign-out now records the session's digest until the cookie would have expired,
# and every console request checks it. The tenant's rows go with the tenant; the operator's
# have none.
UPGRADE = """
CREATE TABLE console_signouts (
    session_digest bytea PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_signouts_expiry ON console_signouts (expires_at);
"""

DOWNGRADE = """
DROP TABLE console_signouts;
"""


def upgrade() -> None:
    execute_script(op, UPGRADE)


def downgrade() -> None:
    execute_script(op, DOWNGRADE)
