"""A number's registration and removal: the steps with Meta and the rows here, for every way in
(the numbers API, Embedded Signup)."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import asyncpg

from wa_cloud.db.queries import Q
from wa_cloud.errors import Conflict, Unprocessable
from wa_cloud.graph.errors import GraphError
from wa_cloud.inbound.index import source_of
from wa_cloud.providers.cloud import cloud_provider
from wa_cloud.providers.numbers import gateway_of
from wa_cloud.providers.watchdog import register_session
from wa_cloud.providers.websession import DEFAULT_THROUGHPUT_MPS, new_instance_name
from wa_cloud.secretbox import SecretUnreadable
from wa_cloud.state import AppState
from wa_cloud.tenants import audit, sealed
from wa_cloud.tenants.onboarding import subscribe_and_register, verify_number

logger = logging.getLogger(__name__)


def number_json(row: asyncpg.Record) -> dict[str, Any]:
    shown = {
        "phone_number_id": row["phone_number_id"],
        "waba_id": row["waba_id"],
        "display_phone_number": row["display_phone_number"],
        "verified_name": row["verified_name"],
        "quality_rating": row["quality_rating"],
        "name_status": row["name_status"],
        "code_verification_status": row["code_verification_status"],
        "throughput_level": row["throughput_level"],
        "registered": row["registered"],
        "app_id": row["app_id"],
        "provider": row["provider"],
        "bot_enabled": row["bot_enabled"],
        "throughput_mps": row["throughput_mps"],
        "created_at": row["created_at"].isoformat(),
    }
    if row["provider"] == "websession":
        shown["state"] = row["session_state"]
    return shown


# Messages a second Meta allows per throughput level: 80 by default, 1,000 once Meta raises it.
META_THROUGHPUT = {"HIGH": 1000}


DEFAULT_META_THROUGHPUT = 80


def meta_throughput(level: str | None) -> int:
    return META_THROUGHPUT.get((level or "").upper(), DEFAULT_META_THROUGHPUT)


async def register_number(
    state: AppState,
    tenant_id: UUID,
    *,
    phone_number_id: str,
    waba_id: str,
    token: str,
    pin: str | None,
    app_id: str | None = None,
    display: str | None = None,
) -> asyncpg.Record:
    """Prove the token with Meta, then check the number is free here, then subscribe and
    register at Meta, then store the number (token and PIN sealed) in one transaction: a failure
    anywhere stores nothing.

    Whether a number or WABA is registered here is told only to a caller whose token Meta
    accepted for it: asking first would let anyone probe which numbers we serve. No database
    connection is held while Meta answers.
    """
    if app_id is not None:
        async with state.pool.acquire() as conn:
            if await conn.fetchval(Q.tenant_owns_app, app_id, tenant_id) is None:
                raise Unprocessable("'app_id' is not one of your registered apps.", "unknown_app")
    info = await verify_number(
        state.pool,
        state.graph,
        tenant_id,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        token=token,
    )
    async with state.pool.acquire() as conn:
        if await conn.fetchval(Q.number_taken, phone_number_id) is not None:
            raise Conflict("That phone_number_id is already registered.", "number_exists")
        if await conn.fetchval(Q.waba_owner, waba_id, tenant_id) is not None:
            raise Conflict("That WABA belongs to another tenant.", "waba_owned_elsewhere")
    facts = await subscribe_and_register(
        state.pool,
        state.graph,
        tenant_id,
        info,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        token=token,
        pin=pin,
    )
    async with state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            Q.insert_number,
            phone_number_id,
            tenant_id,
            waba_id,
            facts.display_phone_number or display,
            app_id,
            "cloud",
            state.box.seal(token, context=sealed.NUMBER_TOKEN.context(phone_number_id)),
            None
            if pin is None
            else state.box.seal(pin, context=sealed.NUMBER_PIN.context(phone_number_id)),
            facts.verified_name,
            facts.quality_rating,
            facts.name_status,
            facts.code_verification_status,
            facts.throughput_level,
            facts.registered,
        )
        if row is None:  # registered by someone else while Meta was being asked
            raise Conflict("That phone_number_id is already registered.", "number_exists")
        await conn.execute(Q.set_messaging_limit, phone_number_id, facts.messaging_limit)
        # What Meta sent before the number was stored here (subscribing comes first) was
        # kept as orphaned: its deliveries are indexed again now, for this number only.
        adopted = await conn.fetchval(
            Q.adopt_orphaned_events, phone_number_id, waba_id, source_of(app_id)
        )
        await audit.record(
            conn,
            "number.registered",
            tenant_id=tenant_id,
            actor=audit.tenant_actor(tenant_id),
            detail={
                "phone_number_id": phone_number_id,
                "waba_id": waba_id,
                "registered": facts.registered,
                "adopted_deliveries": adopted,
            },
        )
    logger.info(
        "number registered",
        extra={"tenant_id": str(tenant_id), "phone_number_id": phone_number_id},
    )
    return row


async def register_web_session(
    state: AppState,
    tenant_id: UUID,
    *,
    phone_number_id: str,
    display: str,
    gateway_url: str,
    api_key: str,
) -> asyncpg.Record:
    """A web-session number: stored with its gateway (the URL checked by the guard, the key
    sealed), and its session row, whose instance the watchdog creates at once. Its own instance
    name: no two registrations ever share a session."""
    await state.tenant_http.guard.check(gateway_url)
    async with state.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(Q.number_taken, phone_number_id) is not None:
            raise Conflict("That phone_number_id is already registered.", "number_exists")
        row = await conn.fetchrow(
            Q.insert_web_session_number,
            phone_number_id,
            tenant_id,
            display,
            state.box.seal(api_key, context=sealed.NUMBER_TOKEN.context(phone_number_id)),
            gateway_url,
            new_instance_name(phone_number_id),
            DEFAULT_THROUGHPUT_MPS,
        )
        if row is None:
            raise Conflict("That phone_number_id is already registered.", "number_exists")
        await register_session(conn, phone_number_id, tenant_id)
        await audit.record(
            conn,
            "number.registered",
            tenant_id=tenant_id,
            actor=audit.tenant_actor(tenant_id),
            detail={"phone_number_id": phone_number_id, "provider": "websession"},
        )
    return row


async def remove_number(
    state: AppState, tenant_id: UUID, phone_number_id: str
) -> tuple[bool, dict[str, Any] | None] | None:
    """Deregister the number at Meta, then remove it here (token and PIN forgotten, history
    kept): (deregistered at Meta, Meta's error if not); None when it is not the tenant's."""
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(Q.number_secrets, phone_number_id, tenant_id)
    if row is None:
        return None
    deregistered, meta_error = True, None
    try:
        if row["provider"] == "websession":
            # Logged out and deleted at the gateway: the session ends with the number.
            await gateway_of(state.tenant_http, state.box, row).delete()
        else:
            await cloud_provider(state.graph, state.box, dict(row)).deregister()
    except GraphError as exc:
        # The number is removed here all the same: its secrets must not outlive the wish.
        deregistered, meta_error = False, exc.as_dict()
    except SecretUnreadable:
        deregistered, meta_error = False, {"message": "the access token could not be opened"}
    async with state.pool.acquire() as conn, conn.transaction():
        await conn.execute(Q.remove_number, phone_number_id, tenant_id)
        # Its campaigns end: the number may come back as another tenant's.
        live = await conn.fetch(Q.number_broadcasts, phone_number_id, tenant_id, True)
        stopped = [r["id"] for r in live]
        await conn.execute(
            Q.stop_broadcasts, stopped, "cancelled", "number_removed", "number_removed"
        )
        await conn.execute(Q.session_ended, phone_number_id, tenant_id)
        await audit.record(
            conn,
            "number.removed",
            tenant_id=tenant_id,
            actor=audit.tenant_actor(tenant_id),
            severity="info" if deregistered else "warning",
            detail={
                "phone_number_id": phone_number_id,
                "deregistered": deregistered,
                **({"meta": meta_error} if meta_error else {}),
            },
        )
    return deregistered, meta_error
