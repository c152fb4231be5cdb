"""The document's `paths`: one module per tag, merged in the order of the document's tags
(the order `/openapi.json` has always had)."""

from __future__ import annotations

from wa_cloud.api.openapi.paths import admin, campaigns, ops, pages, tenant, webhooks
from wa_cloud.api.openapi.schema import Schema


def all_paths() -> dict[str, Schema]:
    return {
        **webhooks.paths(),
        **ops.paths(),
        **pages.paths(),
        **admin.paths(),
        **tenant.paths(),
        **campaigns.paths(),
    }
