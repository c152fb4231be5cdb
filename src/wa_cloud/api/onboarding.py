"""Embedded Signup: the code Meta's front end returned becomes a registered number."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_tenant
from wa_cloud.asgi import field_digits, field_pin, field_str, read_object, reject_unknown
from wa_cloud.errors import ApiError
from wa_cloud.graph.errors import GraphError
from wa_cloud.tenants import audit
from wa_cloud.tenants.numbers import number_json, register_number
from wa_cloud.tenants.onboarding import OnboardingFailed


async def embedded_signup(request: Request) -> JSONResponse:
    """Exchange the code with the platform app's id and secret for a business token, then
    onboard the number with it exactly as `POST /v1/numbers` does."""
    state, caller = await require_tenant(request)
    caller.require_active()
    body = await read_object(request)
    reject_unknown(body, {"code", "waba_id", "phone_number_id", "pin"})
    code = field_str(body, "code", max_length=2048)
    waba_id = field_digits(body, "waba_id")
    phone_number_id = field_digits(body, "phone_number_id")
    pin = field_pin(body)
    settings = state.settings
    if not settings.app_id or not settings.app_secret:
        raise ApiError(503, "signup_unavailable", "The platform's Meta app is not configured.")
    try:
        token = await state.graph.exchange_code(settings.app_id, settings.app_secret, code)
    except GraphError as exc:
        async with state.pool.acquire() as conn:
            await audit.record(
                conn,
                "onboarding.failed",
                tenant_id=caller.tenant_id,
                actor=audit.tenant_actor(caller.tenant_id),
                severity="error",
                detail={
                    "step": "exchange",
                    "phone_number_id": phone_number_id,
                    "meta": exc.as_dict(),
                },
            )
        raise OnboardingFailed("exchange", exc) from exc
    row = await register_number(
        state,
        caller.tenant_id,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        token=token,
        pin=pin,
    )
    return JSONResponse(number_json(row), status_code=201)
