"""Onboarding a number: prove the token, subscribe the app, register, then store.

Every step talks to the Graph API before anything is stored, so a failure leaves nothing
half-stored here; each step and each failure is an audit row. Meta's refusals come back to the
tenant with Meta's own code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from wa_cloud.errors import ApiError
from wa_cloud.graph.client import GraphClient
from wa_cloud.graph.errors import AuthenticationFailed, GraphError, PermissionDenied
from wa_cloud.tenants import audit

FIELDS = (
    "display_phone_number,verified_name,quality_rating,name_status,"
    "code_verification_status,throughput,messaging_limit_tier"
)


class OnboardingFailed(ApiError):
    """Meta refused a step (422, or 503 when Meta was unreachable or busy: try again)."""

    def __init__(self, step: str, exc: GraphError) -> None:
        if isinstance(exc, AuthenticationFailed):
            code = "meta_token_invalid"
        elif isinstance(exc, PermissionDenied):
            code = "meta_permission_denied"
        else:
            code = "meta_unavailable" if exc.retryable else f"meta_{step}_failed"
        what = exc.details or exc.message
        super().__init__(
            503 if exc.retryable else 422,
            code,
            f"Meta refused the {step} step (error {exc.code}): {what}",
            {"step": step, "meta": exc.as_dict()},
        )


@dataclass(frozen=True, slots=True)
class NumberFacts:
    display_phone_number: str | None
    verified_name: str | None
    quality_rating: str | None
    name_status: str | None
    code_verification_status: str | None
    throughput_level: str | None
    registered: bool
    messaging_limit: str | None = None  # Meta's tier (TIER_250 ... TIER_UNLIMITED)

    @classmethod
    def from_graph(cls, info: Mapping[str, Any], registered: bool) -> NumberFacts:
        throughput = info.get("throughput")
        level = throughput.get("level") if isinstance(throughput, Mapping) else None
        return cls(
            display_phone_number=_digits(info.get("display_phone_number")),
            verified_name=_text(info.get("verified_name")),
            quality_rating=_text(info.get("quality_rating")),
            name_status=_text(info.get("name_status")),
            code_verification_status=_text(info.get("code_verification_status")),
            throughput_level=_text(level),
            registered=registered,
            messaging_limit=_text(info.get("messaging_limit_tier")),
        )


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def _digits(value: object) -> str | None:
    text = _text(value)
    return "".join(c for c in text if c.isdigit()) or None if text else None


async def _step(
    pool: asyncpg.Pool, tenant_id: UUID, step: str, phone_number_id: str, call: Any
) -> Any:
    try:
        return await call
    except GraphError as exc:
        await _failed(
            pool,
            tenant_id,
            {"step": step, "phone_number_id": phone_number_id, "meta": exc.as_dict()},
        )
        raise OnboardingFailed(step, exc) from exc


async def _failed(pool: asyncpg.Pool, tenant_id: UUID, detail: Mapping[str, Any]) -> None:
    # A connection only for the audit row: none is held while Meta is asked.
    async with pool.acquire() as conn:
        await audit.record(
            conn,
            "onboarding.failed",
            tenant_id=tenant_id,
            actor=audit.tenant_actor(tenant_id),
            severity="error",
            detail=detail,
        )


async def verify_number(
    pool: asyncpg.Pool,
    graph: GraphClient,
    tenant_id: UUID,
    *,
    phone_number_id: str,
    waba_id: str,
    token: str,
) -> Mapping[str, Any]:
    """Prove with Meta that `token` reads the number and that it belongs to the WABA; return
    what Meta says of it. Raise `OnboardingFailed` (or 422 `number_not_in_waba`).

    Holds no database connection while Meta answers (a slow Meta must not starve the pool)."""
    info = await _step(
        pool,
        tenant_id,
        "verify",
        phone_number_id,
        graph.phone_number(phone_number_id, token, FIELDS),
    )
    numbers = await _step(
        pool, tenant_id, "verify", phone_number_id, graph.waba_numbers(waba_id, token)
    )
    if phone_number_id not in {str(n.get("id")) for n in numbers}:
        await _failed(
            pool,
            tenant_id,
            {"step": "verify", "phone_number_id": phone_number_id, "reason": "number not in WABA"},
        )
        raise ApiError(
            422,
            "number_not_in_waba",
            f"Meta does not list {phone_number_id} among the numbers of WABA {waba_id}.",
        )
    return dict(info)


async def subscribe_and_register(
    pool: asyncpg.Pool,
    graph: GraphClient,
    tenant_id: UUID,
    info: Mapping[str, Any],
    *,
    phone_number_id: str,
    waba_id: str,
    token: str,
    pin: str | None,
) -> NumberFacts:
    """Subscribe the app to the WABA and register the number (with its PIN, when given)."""
    await _step(pool, tenant_id, "subscribe", phone_number_id, graph.subscribe_app(waba_id, token))
    if pin is not None:
        await _step(
            pool,
            tenant_id,
            "register",
            phone_number_id,
            graph.register(phone_number_id, token, pin),
        )
    return NumberFacts.from_graph(info, registered=pin is not None)
