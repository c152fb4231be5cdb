"""`paths` of the admin tag: the platform operator's tenants, API keys, invitations and
audit log."""

from __future__ import annotations

from functools import partial
from typing import Final

from wa_cloud.api.openapi.schema import (
    PAGING,
    UUID,
    Schema,
    errors,
    json_body,
    ok,
    operation,
    param,
    ref,
    with_body,
)

# Every operation here: the admin tag, the platform's admin token.
_operation: Final = partial(operation, tag="admin", security="admin")
_with_body: Final = partial(with_body, tag="admin", security="admin")


def paths() -> dict[str, Schema]:
    tenant_id = [param("TenantId")]
    return {
        "/v1/admin/tenants": {
            "post": _with_body(
                "createTenant",
                "Create a tenant and its first API key",
                body=json_body(ref("NewTenant")),
                responses={"201": ok("Created; the key is shown this once.", ref("TenantCreated"))},
            ),
            "get": _operation(
                "listTenants",
                "List tenants, oldest first",
                parameters=PAGING,
                responses={"200": ok("A page of tenants.", ref("TenantPage")), **errors(400)},
            ),
        },
        "/v1/admin/tenants/{tenant_id}": {
            "parameters": tenant_id,
            "get": _operation(
                "getTenant",
                "Read a tenant",
                responses={"200": ok("The tenant.", ref("Tenant")), **errors(404)},
            ),
            "patch": _with_body(
                "updateTenant",
                "Activate or deactivate a tenant; rename it; change its email",
                body=json_body(ref("TenantChange")),
                responses={"200": ok("The tenant as changed.", ref("Tenant"))},
                also=(404,),
            ),
            "delete": _operation(
                "deleteTenant",
                "Delete a deactivated tenant and everything it owns",
                description=(
                    "Numbers (and their sealed tokens), contacts, messages, statuses, events, "
                    "media, forwards, its webhook, apps, API keys, its audit rows, and the "
                    "templates of WABAs no other tenant uses, in one transaction. 409 "
                    "`tenant_active` unless the tenant was deactivated first. Raw webhook "
                    "bodies are not per tenant: the retention job clears them."
                ),
                responses={
                    "200": ok("Deleted; what was removed.", ref("TenantDeleted")),
                    **errors(404, 409),
                },
            ),
        },
        "/v1/admin/tenants/{tenant_id}/keys": {
            "parameters": tenant_id,
            "post": _operation(
                "createApiKey",
                "Another API key for the tenant (rotation: create, move over, revoke the old)",
                responses={
                    "201": ok("Created; the key is shown this once.", ref("ApiKeyCreated")),
                    **errors(404),
                },
            ),
            "get": _operation(
                "listApiKeys",
                "The tenant's API keys, revoked ones included (never the keys themselves)",
                responses={"200": ok("All the keys.", ref("ApiKeyList")), **errors(404)},
            ),
        },
        "/v1/admin/tenants/{tenant_id}/keys/{key_id}": {
            "parameters": [*tenant_id, param("KeyId")],
            "delete": _operation(
                "revokeApiKey",
                "Revoke an API key",
                responses={"200": ok("The key, revoked.", ref("ApiKey")), **errors(404)},
            ),
        },
        "/v1/admin/tenants/{tenant_id}/invite": {
            "parameters": tenant_id,
            "post": _with_body(
                "inviteTenant",
                "Mail the tenant a signed, expiring link to its status page",
                description=(
                    "To the tenant's email, or to `email` when given. 202: accepted by the mail "
                    "server (in dev, logged when none is configured), not yet delivered. Every "
                    "invitation revokes the links sent before it, even when the mail fails "
                    "(503 `mail_unavailable`, or `mail_not_configured` without SMTP_URL)."
                ),
                body=json_body(ref("Invitation"), required=False),
                responses={"202": ok("Sent.", ref("InvitationSent"))},
                also=(404,),
            ),
        },
        "/v1/admin/tenants/{tenant_id}/credits": {
            "parameters": tenant_id,
            "post": _with_body(
                "addCredits",
                "Add credits to a tenant, or correct its balance downwards",
                description=(
                    "In one transaction: the balance moves and a ledger row records it (the "
                    "tenant sees it in GET /v1/usage). A negative amount that would take the "
                    "balance below 0 is 422 `insufficient_credits`."
                ),
                body=json_body(ref("CreditsChange")),
                responses={
                    "201": ok("Moved; the new balance and its ledger row.", ref("CreditsAdded"))
                },
                also=(404,),
            ),
        },
        "/v1/admin/events": {
            "get": _operation(
                "listAuditEvents",
                "The audit log of the whole platform, newest first",
                parameters=[
                    {
                        "name": "tenant_id",
                        "in": "query",
                        "required": False,
                        "description": "Only this tenant's rows (an unknown id is a 404).",
                        "schema": UUID,
                    },
                    *PAGING,
                ],
                responses={"200": ok("A page of events.", ref("AuditPage")), **errors(400, 404)},
            ),
        },
    }
