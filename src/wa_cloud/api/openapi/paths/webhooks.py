"""`paths` of the webhooks tag: Meta's subscription handshake and its signed deliveries,
to the platform app and to a tenant's own app."""

from __future__ import annotations

from functools import partial
from typing import Final

from wa_cloud.api.openapi.schema import DIGITS, Schema, err, json_body, ok, operation, ref

_HUB: Final[list[Schema]] = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
    for name in ("hub.mode", "hub.verify_token", "hub.challenge")
]
_SIGNATURE: Final[Schema] = {
    "name": "X-Hub-Signature-256",
    "in": "header",
    "required": True,
    "description": "`sha256=` and the HMAC-SHA256 of the raw body with the app secret.",
    "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
}


# Every operation here: the webhooks tag; Meta's signature, not a security scheme.
_operation: Final = partial(operation, tag="webhooks")


def paths() -> dict[str, Schema]:
    webhook_post = {
        "200": {"description": "Stored durably; Meta may forget it."},
        "400": err("BadRequest"),
        "401": ok("No X-Hub-Signature-256 header.", ref("Error")),
        "403": ok("The signature does not match the body.", ref("Error")),
        "413": err("PayloadTooLarge"),
        "503": ok("Not stored (database down): Meta retries.", ref("Error")),
    }
    handshake = {
        "200": ok("The hub.challenge, echoed.", {"type": "string"}, media_type="text/plain"),
        "403": ok("hub.mode or hub.verify_token is wrong.", ref("Error")),
    }
    return {
        "/webhook": {
            "get": _operation(
                "verifyPlatformWebhook",
                "Meta's subscription handshake for the platform app",
                parameters=_HUB,
                responses=handshake,
            ),
            "post": _operation(
                "receivePlatformWebhook",
                "A webhook delivery from Meta to the platform app",
                parameters=[_SIGNATURE],
                body=json_body(ref("MetaNotification")),
                responses=webhook_post,
            ),
        },
        "/webhook/websession/{phone_number_id}": {
            "parameters": [
                {
                    "name": "phone_number_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": DIGITS},
                }
            ],
            "post": _operation(
                "receiveGatewayWebhook",
                "An event from a web-session number's gateway (Evolution API v2)",
                parameters=[
                    {
                        "name": "X-WA-Gateway-Secret",
                        "in": "header",
                        "required": True,
                        "description": "The secret we set on the number's gateway instance.",
                        "schema": {"type": "string"},
                    }
                ],
                body=json_body({"type": "object", "required": ["event"]}),
                responses={
                    "200": {"description": "Stored durably."},
                    "403": ok("No secret, a wrong one, or no such number.", ref("Error")),
                    "413": err("PayloadTooLarge"),
                    "503": ok("Not stored (database down): the gateway retries.", ref("Error")),
                },
            ),
        },
        "/webhook/apps/{app_id}": {
            "parameters": [
                {
                    "name": "app_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": DIGITS},
                }
            ],
            "get": _operation(
                "verifyAppWebhook",
                "Meta's subscription handshake for a tenant's own app",
                parameters=_HUB,
                responses={**handshake, "404": err("NotFound"), "503": err("Unavailable")},
            ),
            "post": _operation(
                "receiveAppWebhook",
                "A webhook delivery from Meta to a tenant's own app (its secret verifies it)",
                parameters=[_SIGNATURE],
                body=json_body(ref("MetaNotification")),
                responses={**webhook_post, "404": err("NotFound")},
            ),
        },
    }
