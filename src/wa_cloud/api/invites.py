"""`POST /v1/admin/tenants/{tenant_id}/invite`: mail a tenant the signed link to its status page
(and the same token's link to sign in to the console).

Body (optional): `{"email"}` to send somewhere other than the tenant's stored address.
Answers 202 `{"sent_to", "expires_at"}`: accepted by the mail server (in dev, logged when none
is configured), not yet delivered to a mailbox.

Every invitation revokes the links sent before it: the tenant's link generation moves on
before the mail goes out, so a leaked link dies even when the new mail cannot be sent.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_admin
from wa_cloud.asgi import field_str, parse_uuid, read_object, reject_unknown
from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError, NotFound, Unprocessable
from wa_cloud.state import AppState
from wa_cloud.tenants import audit
from wa_cloud.tenants.links import expires_at, make_console_link, make_link
from wa_cloud.tenants.mail import (
    MailNotConfigured,
    MailNotSent,
    compose_invitation,
    send_invitation,
)

logger = logging.getLogger(__name__)

# Deliberately loose (the mail server is the judge), but one address and no header tricks.
_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+$")


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation issued: where it went, its links (the status page and the console's
    sign-in, one signed token) and, when the mail did not go out, why not. The links were
    issued either way, and those of older invitations no longer open."""

    sent_to: str
    expires_at: datetime
    status_link: str
    console_link: str
    failure: MailNotSent | None


async def invite_tenant(request: Request) -> JSONResponse:
    state = require_admin(request)
    tenant_id = parse_uuid(request.path_params["tenant_id"])
    body = await read_object(request, optional=True)
    reject_unknown(body, {"email"})
    override = field_str(body, "email", required=False, max_length=320)
    invitation = await issue_invitation(state, tenant_id, override)
    if invitation.failure is not None:
        exc = invitation.failure
        message_text = f"{exc} Links sent before this one no longer open."
        if exc.refused:
            raise Unprocessable(message_text, "email_refused")
        code = "mail_not_configured" if isinstance(exc, MailNotConfigured) else "mail_unavailable"
        raise ApiError(503, code, message_text)
    return JSONResponse(
        {"sent_to": invitation.sent_to, "expires_at": invitation.expires_at.isoformat()},
        status_code=202,
    )


async def issue_invitation(state: AppState, tenant_id: UUID, override: str | None) -> Invitation:
    """Revoke the tenant's older links, sign new ones and mail them to `override` or the
    tenant's address; the API and the console both invite this way. A mail that could not be
    sent is the result's `failure`, not an exception: the new links exist regardless."""
    async with state.pool.acquire() as conn:
        tenant = await conn.fetchrow(Q.get_tenant, tenant_id)
    if tenant is None:
        raise NotFound("No tenant with that id.")
    to = override or tenant["email"]
    if not to:
        raise Unprocessable(
            "The tenant has no email address; give one as 'email'.", "missing_email"
        )
    if not _EMAIL.fullmatch(to):
        raise Unprocessable("'email' is not an email address.", "invalid_email")

    async with state.pool.acquire() as conn:
        generation = await conn.fetchval(Q.bump_link_generation, tenant_id)
    if generation is None:  # deleted meanwhile
        raise NotFound("No tenant with that id.")
    issued = time.time()
    link = make_link(state.settings, tenant_id, generation=generation, clock=lambda: issued)
    console_link = make_console_link(
        state.settings, tenant_id, generation=generation, clock=lambda: issued
    )
    expires = expires_at(issued)
    message = compose_invitation(
        state.settings,
        to=to,
        tenant_name=tenant["name"],
        link=link,
        console_link=console_link,
        expires_at=expires,
    )
    try:
        await send_invitation(state.settings, message, link, tenant_id=tenant_id)
    except MailNotSent as exc:
        await _record(
            state.pool, tenant_id, "tenant.invite_failed", "warning", to, expires, generation
        )
        return Invitation(to, expires, link, console_link, exc)
    await _record(state.pool, tenant_id, "tenant.invited", "info", to, expires, generation)
    logger.info("tenant invited", extra={"tenant_id": str(tenant_id)})
    return Invitation(to, expires, link, console_link, None)


async def _record(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    action: str,
    severity: str,
    to: str,
    expires: datetime,
    generation: int,
) -> None:
    # The link itself stays out of the audit log: it opens the page for a week.
    async with pool.acquire() as conn:
        await audit.record(
            conn,
            action,
            tenant_id=tenant_id,
            actor=audit.ADMIN,
            severity=severity,
            # Links of older generations were revoked by this invitation.
            detail={
                "sent_to": to,
                "expires_at": expires.isoformat(),
                "link_generation": generation,
            },
        )
