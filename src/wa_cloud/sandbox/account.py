"""Numbers and onboarding: phone number reads, registration with the two-step PIN, app
subscription, the code-for-token exchange, and `GET|POST|DELETE /{id}` for any object."""

from __future__ import annotations

import re
from typing import Any

from wa_cloud.sandbox import media, templates
from wa_cloud.sandbox.errors import GraphError, bad_param, invalid_token, no_such_object
from wa_cloud.sandbox.graph import GraphRequest
from wa_cloud.sandbox.state import Number, Subscription

DEFAULT_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
)
_PIN = re.compile(r"\d{6}")


def _throughput_level(mps: int) -> str:
    return "HIGH" if mps >= 1000 else "STANDARD"


def number_fields(number: Number) -> dict[str, Any]:
    return {
        "verified_name": number.verified_name,
        "code_verification_status": number.code_verification_status,
        "display_phone_number": number.display_phone_number,
        "quality_rating": number.quality_rating,
        "messaging_limit_tier": number.messaging_limit_tier,
        "name_status": number.name_status,
        "platform_type": "CLOUD_API" if number.registered else "NOT_APPLICABLE",
        "throughput": {"level": _throughput_level(number.throughput_mps)},
        "status": "CONNECTED" if number.registered else "PENDING",
        "id": number.phone_number_id,
    }


def _pick(fields: dict[str, Any], asked: str | None) -> dict[str, Any]:
    wanted = [f.strip() for f in asked.split(",") if f.strip()] if asked else list(DEFAULT_FIELDS)
    unknown = [f for f in wanted if f not in fields]
    if unknown:
        raise bad_param(
            f"Tried accessing nonexisting field ({unknown[0]}) on node type "
            "(WhatsAppBusinessPhoneNumber)."
        )
    picked = {f: fields[f] for f in wanted}
    picked["id"] = fields["id"]  # Graph always returns the id
    return picked


async def get_object(req: GraphRequest) -> dict[str, Any]:
    object_id = req.param("object_id")
    state = req.state
    if req.grant is not None and req.grant.app_id is not None:
        # An app access token reads its own app node and nothing else.
        if object_id != req.grant.app_id:
            raise no_such_object(object_id, "GET")
        return {"id": object_id, "name": state.app_names.get(object_id, "")}
    if object_id in state.media:
        return media.describe(req, state.media[object_id])
    if object_id in state.numbers:
        return _pick(number_fields(req.number(object_id)), req.query.get("fields"))
    template = state.templates.get(object_id)
    if template is not None:
        return templates.describe(req, template)
    raise no_such_object(object_id, "GET")


async def post_object(req: GraphRequest) -> dict[str, Any]:
    """`POST /{id}`: which kind of object the id names decides; only a template takes it."""
    object_id = req.param("object_id")
    if req.grant is not None and req.grant.app_id is not None:
        raise no_such_object(object_id, "POST")
    template = req.state.templates.get(object_id)
    if template is not None:
        return await templates.edit_template(req, template)
    raise no_such_object(object_id, "POST")


async def delete_object(req: GraphRequest) -> dict[str, Any]:
    object_id = req.param("object_id")
    found = req.state.media.get(object_id)
    if found is None:
        raise no_such_object(object_id, "DELETE")
    return media.delete(req, found)


async def waba_numbers(req: GraphRequest) -> dict[str, Any]:
    waba_id = req.waba(req.param("waba_id"))
    asked = req.query.get("fields")
    data = [_pick(number_fields(n), asked) for n in req.state.waba_numbers(waba_id)]
    result: dict[str, Any] = {"data": data}
    if data:
        result["paging"] = {"cursors": {"before": "QVFIUmFiZAZD", "after": "QVFIUmFiZAZD"}}
    return result


async def register(req: GraphRequest) -> dict[str, Any]:
    number = req.number(req.param("phone_number_id"))
    body = req.body()
    if body.get("messaging_product") != "whatsapp":
        raise bad_param('Param messaging_product must be "whatsapp".')
    pin = body.get("pin")
    if pin is None:
        raise bad_param("The parameter pin is required.")
    if not isinstance(pin, str) or not _PIN.fullmatch(pin):
        raise bad_param("Param pin must be a 6-digit string.")
    if number.pin is not None and pin != number.pin:
        raise GraphError(
            133005, "The two-step verification PIN does not match the one on the number."
        )
    # Registering a number without a PIN sets it, as Meta does.
    number.pin = pin
    number.registered = True
    return {"success": True}


async def deregister(req: GraphRequest) -> dict[str, Any]:
    number = req.number(req.param("phone_number_id"))
    number.registered = False
    return {"success": True}


async def subscribe_app(req: GraphRequest) -> dict[str, Any]:
    waba_id = req.waba(req.param("waba_id"))
    body = req.body()
    uri = body.get("override_callback_uri")
    if uri is not None and (
        not isinstance(uri, str) or not uri.startswith(("http://", "https://"))
    ):
        raise bad_param("Param override_callback_uri must be a URL.")
    if uri is not None and not body.get("verify_token"):
        raise bad_param("The parameter verify_token is required with override_callback_uri.")
    req.state.subscriptions[waba_id] = Subscription(uri, body.get("verify_token"))
    return {"success": True}


async def subscribed_apps(req: GraphRequest) -> dict[str, Any]:
    waba_id = req.waba(req.param("waba_id"))
    if waba_id not in req.state.subscriptions:
        return {"data": []}
    app_id = req.state.config.app_id
    entry: dict[str, Any] = {
        "whatsapp_business_api_data": {
            "id": app_id,
            "link": "https://www.facebook.com/",
            "name": "Sandbox",
        }
    }
    uri = req.state.subscriptions[waba_id].override_callback_uri
    if uri:
        entry["override_callback_uri"] = uri
    return {"data": [entry]}


async def unsubscribe_app(req: GraphRequest) -> dict[str, Any]:
    waba_id = req.waba(req.param("waba_id"))
    req.state.subscriptions.pop(waba_id, None)
    return {"success": True}


async def exchange_code(req: GraphRequest) -> dict[str, Any]:
    """`GET /oauth/access_token?client_id&client_secret&code`: the app credentials are the
    authentication here, not a bearer token."""
    query = req.query
    config = req.state.config
    for name in ("client_id", "client_secret", "code"):
        if not query.get(name):
            raise bad_param(f"Missing {name} parameter.")
    if query["client_id"] != config.app_id:
        raise GraphError(
            101,
            "Error validating application. Invalid application ID.",
            message="Error validating application. Invalid application ID.",
        )
    if query["client_secret"] != config.app_secret:
        raise invalid_token("Error validating client secret.")
    grant = req.state.codes.get(query["code"])
    if grant is None:
        raise GraphError(
            100,
            "Invalid verification code format.",
            message="Invalid verification code format.",
            subcode=36007,
        )
    if grant.used:
        raise GraphError(
            100,
            "This authorization code has been used.",
            message="This authorization code has been used.",
            subcode=36009,
        )
    grant.used = True
    return {"access_token": grant.access_token, "token_type": "bearer"}
