"""Every send starts as a row: checked, then queued durably for the sender.

What Meta would refuse is refused here first: a free-form message to a closed window (unless a
fallback template is named), a template whose parameters do not match, a number that is not the
caller's. A repeated `idempotency_key` returns the first message instead of a second send.

A send queued here is a person's (`author` 'human'): with it, the assistant pauses in that
conversation for the number's `human_takeover_minutes` (pauses.sql `human_takeover`), in the
transaction that queues it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from wa_cloud.ai.config import DEFAULTS
from wa_cloud.db.queries import Q
from wa_cloud.errors import Forbidden, NotFound, Unprocessable
from wa_cloud.graph.errors import GraphError
from wa_cloud.inbound.parse import message_text
from wa_cloud.outbox.compose import Composed, compose, template_request
from wa_cloud.outbox.templates import (
    TemplateFetches,
    cached_template,
    check_parameters,
    save_templates,
)
from wa_cloud.providers.base import ProviderFor
from wa_cloud.providers.numbers import capabilities_of
from wa_cloud.window import window_state

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Queued:
    id: UUID
    status: str
    created: bool  # False when an idempotency key returned an earlier message


async def approved_template(
    pool: asyncpg.Pool,
    number: asyncpg.Record,
    name: str,
    language: str,
    provider_for: ProviderFor,
    fetches: TemplateFetches,
) -> asyncpg.Record:
    """The WABA's approved template as we hold it, fetching the WABA's list from Meta on first
    use; 422 when it does not exist or is not approved. No connection is held while Meta
    answers."""
    waba_id = number["waba_id"]
    not_found = Unprocessable(
        f"template '{name}' ({language}) does not exist on this WABA.", "template_not_found"
    )
    if fetches.known_missing(waba_id, name, language):
        raise not_found
    async with pool.acquire() as conn:
        stored = await cached_template(conn, waba_id, name, language)
    if stored is None or stored["stale"]:

        async def fetch_and_save() -> None:
            try:
                fetched = await provider_for(number).templates()
            except GraphError as exc:
                raise Unprocessable(
                    f"could not fetch templates from Meta to check '{name}': {exc.message}",
                    "template_unavailable",
                ) from exc
            async with pool.acquire() as conn:  # only once Meta has answered
                await save_templates(conn, waba_id, fetched)

        await fetches.fetch_once(waba_id, fetch_and_save)
        async with pool.acquire() as conn:
            stored = await cached_template(conn, waba_id, name, language)
    if stored is None:
        fetches.remember_missing(waba_id, name, language)
        raise not_found
    if stored["status"] != "APPROVED":
        raise Unprocessable(
            f"template '{name}' ({language}) is {stored['status']}, not APPROVED.",
            "template_not_approved",
        )
    return stored


async def sending_number(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    request: Mapping[str, Any],
    provider_for: ProviderFor,
) -> asyncpg.Record:
    """The number a send or a campaign goes from (`"from"`): the caller's (404 otherwise),
    of an active tenant (403), its token opening (409)."""
    sender = request.get("from")
    if not isinstance(sender, str) or not sender:
        raise Unprocessable("'from' must be one of your phone_number_ids.", "missing_field")
    number = await conn.fetchrow(Q.sender_number, sender, tenant_id)
    if number is None:
        raise NotFound("No number with that phone_number_id is yours.")
    if not number["active"]:
        raise Forbidden("This tenant is deactivated.", "tenant_inactive")
    if number["flagged_reason"] is not None:
        # Flagged when its token did not open: if it opens now (the key is back, or the
        # number was registered again), the number recovers here; else 409 with the reason.
        provider_for(number)  # raises 409 number_unavailable while the token stays closed
        await conn.execute(Q.unflag_number, sender)
    return number


async def enqueue(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    request: Mapping[str, Any],
    provider_for: ProviderFor,
    fetches: TemplateFetches,
    announce: Callable[[], None],
) -> Queued:
    """Check a send and queue it; `announce` wakes the sender once it is committed (outside the
    transaction: a NOTIFY in it would hold PostgreSQL's notify lock through the fsync)."""
    composed = compose(request)
    key = request.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
        raise Unprocessable("'idempotency_key' must be a string of 1 to 200 characters.")
    fallback: Composed | None = None
    if request.get("fallback_template") is not None:
        if not isinstance(request["fallback_template"], Mapping):
            raise Unprocessable("'fallback_template' must be a template object.")
        fallback = template_request(composed.recipient, request["fallback_template"])

    async with pool.acquire() as conn:
        number = await sending_number(conn, tenant_id, request, provider_for)
        sender: str = number["phone_number_id"]
        if key is not None:
            existing = await conn.fetchrow(Q.find_idempotent, tenant_id, key)
            if existing is not None:
                return Queued(existing["id"], existing["status"], created=False)
        contact = await conn.fetchrow(Q.recipient_contact, sender, composed.recipient, tenant_id)
    capabilities = capabilities_of(number)
    if not capabilities.templates and (composed.is_template or fallback is not None):
        raise Unprocessable(
            "This number is a web session: it has no templates (and no 24-hour window to "
            "need one); send the message itself.",
            "templates_unsupported",
        )
    if not composed.is_template and capabilities.customer_service_window:
        window = window_state(
            contact["last_inbound_at"] if contact else None,
            contact["window_closed_at"] if contact else None,
        )
        if not window.open and fallback is None:
            raise Unprocessable(
                "The customer-service window with this contact is closed (no message from them "
                "in the last 24 hours): send a template, or name a fallback_template.",
                "outside_customer_service_window",
            )
    for template in (composed, fallback):
        if template is not None and template.is_template:
            sent = template.body["template"]
            stored = await approved_template(
                pool, number, sent["name"], sent["language"]["code"], provider_for, fetches
            )
            check_parameters(dict(stored), sent)

    async with pool.acquire() as conn:
        queued = await _insert(conn, tenant_id, sender, request, composed, fallback, contact, key)
    if queued.created:
        announce()
    return queued


async def _insert(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    sender: str,
    request: Mapping[str, Any],
    composed: Composed,
    fallback: Composed | None,
    contact: asyncpg.Record | None,
    key: str | None,
) -> Queued:
    async with conn.transaction():
        row = await conn.fetchrow(
            Q.enqueue_message,
            tenant_id,
            sender,
            contact["id"] if contact else None,
            composed.kind,
            message_text(composed.body),
            dict(request),
            composed.body,
            composed.recipient,
            key,
            fallback.body if fallback else None,
            (composed.body.get("context") or {}).get("message_id"),
            "human",
            None,
        )
        if row is None:  # a concurrent call with the same key won the race
            existing = await conn.fetchrow(Q.find_idempotent, tenant_id, key)
            return Queued(existing["id"], existing["status"], created=False)
        if contact is not None:
            # A person answers this conversation now: the assistant keeps out of it a while.
            await conn.execute(
                Q.human_takeover,
                contact["id"],
                sender,
                tenant_id,
                DEFAULTS.human_takeover_minutes,
            )
        await conn.execute(Q.ensure_pacing, sender)
    logger.info(
        "message queued",
        extra={
            "tenant_id": str(tenant_id),
            "message_id": str(row["id"]),
            "phone_number_id": sender,
        },
    )
    return Queued(row["id"], row["status"], created=True)
