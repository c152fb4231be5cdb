"""`GET /v1/events`: the tenant's own rows of the audit log."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.admin import list_audit
from wa_cloud.api.auth import require_tenant


async def list_events(request: Request) -> JSONResponse:
    """This tenant's own rows of the audit log."""
    state, caller = await require_tenant(request)
    return await list_audit(state, request, caller.tenant_id)
