"""`GET /openapi.json`: the OpenAPI 3.1 description of every HTTP operation, as plain data.

Hand-written, not derived from the handlers: it is the contract the handlers are tested
against (tests/test_openapi.py runs schemathesis on it). A route added to `app.ROUTES` without
an entry here fails that test, and so does an entry here that no route serves.

Request schemas say what each handler accepts (required fields, types, limits, and
`additionalProperties: false` where the handler refuses unknown fields); a body that passes
the schema can still break a rule the schema cannot express (a closed 24-hour window, a
duplicate number): that is the documented 409 or 422. Response schemas pin every field.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from wa_cloud.outbox import compose

Schema = dict[str, Any]

HTTP_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# A registered number's id in the examples (also the corpus's number A).
EXAMPLE_NUMBER: Final = "106540352242922"


# Building blocks -----------------------------------------------------------------------------
def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """The same schema, also allowing null (OpenAPI 3.1: a type list)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def closed(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these properties, all required except `optional`."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


# A string the handler accepts: not blank once trimmed, no NUL (PostgreSQL text cannot hold one).
_NOT_BLANK = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
DIGITS = r"^[0-9]{5,20}$"
RECIPIENT = r"^(\+?[0-9]{6,20}|[A-Z]{2}\.[A-Za-z0-9.]+)$"


def text(max_length: int, description: str | None = None) -> Schema:
    schema: Schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "pattern": _NOT_BLANK,
    }
    if description:
        schema["description"] = description
    return schema


def digits(description: str) -> Schema:
    return {"type": "string", "pattern": DIGITS, "description": description}


TIMESTAMP: Final[Schema] = {"type": "string", "format": "date-time"}
UUID: Final[Schema] = {"type": "string", "format": "uuid"}


def page_of(item: str, *, single: bool = False) -> Schema:
    """The list shape `{"data": [...], "next": cursor|null}`; `single`: never a next page."""
    cursor: Schema = (
        {"type": "null"}
        if single
        else {
            "type": ["string", "null"],
            "description": "Pass as `cursor` for the next page; null on the last page.",
        }
    )
    return closed({"data": {"type": "array", "items": ref(item)}, "next": cursor})


def json_body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def ok(description: str, schema: Schema, *, media_type: str = "application/json") -> Schema:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def err(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    responses: dict[str, Schema],
    security: str | None = None,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    description: str | None = None,
) -> Schema:
    op: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    op["security"] = [{security: []}] if security else []
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    op["responses"] = responses
    return op


_ERROR_RESPONSES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    422: "Unprocessable",
    429: "RateLimited",
    503: "Unavailable",
}


def _errors(*statuses: int) -> dict[str, Schema]:
    """The error answers of an authenticated operation: `statuses`, and always 401 (no or bad
    credentials), 429 (a tenant key over its rate) and 503 (the database is down)."""
    wanted = {*statuses, 401, 429, 503}
    return {str(status): err(_ERROR_RESPONSES[status]) for status in sorted(wanted)}


# Component schemas ---------------------------------------------------------------------------
MESSAGE_STATUSES: Final = [
    "received",
    "queued",
    "sending",
    "accepted",
    "sent",
    "delivered",
    "read",
    "played",
    "failed",
    "unknown",
]
SEND_TYPES: Final = sorted(compose.SEND_TYPES)
FORWARDED_EVENTS: Final = [
    "message.received",
    "message.status",
    "number.updated",
    "template.updated",
    "bot.reply",
]
DELIVERY_STATES: Final = ["pending", "delivered", "failed"]
INTERACTIVE_TYPES: Final = sorted(compose.INTERACTIVE_TYPES)

_TENANT: Final[dict[str, Schema]] = {
    "id": UUID,
    "name": {"type": "string"},
    "email": {"type": ["string", "null"]},
    "active": {
        "type": "boolean",
        "description": "False: sends, replies and changes are refused; inbound is still stored.",
    },
    "created_at": TIMESTAMP,
}

_API_KEY: Final[dict[str, Schema]] = {
    "id": UUID,
    "prefix": {"type": "string", "description": "The key's first characters, to tell keys apart."},
}


def _media_object(*, caption: bool, filename: bool) -> Schema:
    """An image/audio/video/document/sticker object in Meta's send shape: an `id` from
    `POST /v1/media` or a `link`, exactly one of them."""
    properties: dict[str, Schema] = {
        "id": {"type": "string", "minLength": 1},
        "link": {"type": "string", "format": "uri", "pattern": "^https?://"},
        "caption": text(1024) if caption else False,
        "filename": {"type": "string"} if filename else False,
    }
    return {
        "type": "object",
        "properties": properties,
        "oneOf": [{"required": ["id"]}, {"required": ["link"]}],
    }


SCHEMAS: Final[dict[str, Schema]] = {
    "Error": closed(
        {
            "error": {
                "type": "object",
                "description": "Some errors carry more machine-readable detail beside the two.",
                "properties": {
                    "code": {
                        "type": "string",
                        "pattern": "^[a-z][a-z0-9_]*$",
                        "description": "Machine-readable, snake_case.",
                        "examples": ["unknown_field", "outside_customer_service_window"],
                    },
                    "message": {"type": "string", "description": "A sentence for a human."},
                    "step": {
                        "type": "string",
                        "description": "Onboarding: the step Meta refused (verify, subscribe...).",
                    },
                    "meta": {**ref("MessageError"), "description": "Meta's own error."},
                },
                "required": ["code", "message"],
            }
        }
    ),
    # Operations
    "Health": closed({"status": {"const": "ok"}}),
    "Ready": closed(
        {
            "status": {"const": "ready"},
            "schema": {"type": "string", "description": "The migration the database is at."},
            "loops": {
                "type": "object",
                "description": "A process running a worker: its loops, running or restarting.",
            },
        },
        optional=("loops",),
    ),
    # Admin
    "Tenant": closed(_TENANT),
    "TenantCreated": closed(
        {
            **_TENANT,
            "api_key": {"type": "string", "description": "Shown this once; stored hashed."},
        }
    ),
    "TenantPage": page_of("Tenant"),
    "NewTenant": closed(
        {"name": text(200), "email": nullable(text(320))},
        optional=("email",),
    ),
    "TenantChange": closed(
        {
            "active": {
                "type": ["boolean", "null"],
                "description": "false stops sends and replies; inbound is still stored.",
            },
            "name": nullable(text(200)),
            "email": nullable(text(320)),
        },
        optional=("active", "name", "email"),
    ),
    "TenantDeleted": closed(
        {
            "id": UUID,
            "deleted": {
                "type": "object",
                "description": "Rows removed, per kind.",
                "additionalProperties": {"type": "integer", "minimum": 0},
                "required": [
                    "numbers",
                    "contacts",
                    "messages",
                    "statuses",
                    "events",
                    "media",
                    "forwards",
                    "webhooks",
                    "apps",
                    "api_keys",
                    "templates",
                    "audit_events",
                ],
            },
        }
    ),
    "ApiKey": closed(
        {
            **_API_KEY,
            "created_at": TIMESTAMP,
            "revoked_at": nullable(TIMESTAMP),
        }
    ),
    "ApiKeyCreated": closed(
        {**_API_KEY, "api_key": {"type": "string", "description": "Shown this once."}}
    ),
    "ApiKeyList": page_of("ApiKey", single=True),
    "Invitation": closed({"email": nullable(text(320))}, optional=("email",)),
    "InvitationSent": closed(
        {
            "sent_to": {"type": "string"},
            "expires_at": {**TIMESTAMP, "description": "When the status-page link stops opening."},
        }
    ),
    "AuditEvent": closed(
        {
            "id": {"type": "integer", "minimum": 1},
            "created_at": TIMESTAMP,
            "tenant_id": nullable(UUID),
            "actor": {"type": "string", "examples": ["admin", "tenant:<uuid>"]},
            "severity": {"enum": ["info", "warning", "error"]},
            "action": {"type": "string", "examples": ["tenant.created", "number.registered"]},
            "detail": {"type": "object", "description": "What changed; never a secret."},
        }
    ),
    "AuditPage": page_of("AuditEvent"),
    # Tenant: numbers and apps
    "Number": closed(
        {
            "phone_number_id": {"type": "string"},
            "waba_id": {"type": "string"},
            "display_phone_number": {"type": ["string", "null"]},
            "verified_name": {"type": ["string", "null"]},
            "quality_rating": {
                "type": ["string", "null"],
                "description": "Meta's: GREEN, YELLOW, RED or UNKNOWN.",
            },
            "name_status": {"type": ["string", "null"], "description": "Meta's, e.g. APPROVED."},
            "code_verification_status": {"type": ["string", "null"]},
            "throughput_level": {
                "type": ["string", "null"],
                "description": "Meta's throughput level, e.g. STANDARD or HIGH.",
            },
            "registered": {
                "type": "boolean",
                "description": "Registered with Meta here (a PIN was given).",
            },
            "app_id": {"type": ["string", "null"]},
            "provider": {"enum": ["cloud", "websession"]},
            "bot_enabled": {"type": "boolean"},
            "throughput_mps": {"type": "integer", "minimum": 1, "maximum": 1000},
            "created_at": TIMESTAMP,
        }
    ),
    "NumberList": page_of("Number", single=True),
    "NewNumber": closed(
        {
            "phone_number_id": digits("Meta's phone number id."),
            "waba_id": digits("The WhatsApp Business Account the number belongs to."),
            "access_token": text(4096, "A token with whatsapp_business_messaging; never shown."),
            "display_phone_number": nullable(digits("The number itself, digits only.")),
            "app_id": nullable(digits("One of your apps (POST /v1/apps); default: ours.")),
            "pin": {
                "type": ["string", "null"],
                "pattern": "^[0-9]{6}$",
                "description": "The two-step verification PIN; never shown.",
            },
            "provider": {"enum": ["cloud", None], "default": "cloud"},
        },
        optional=("display_phone_number", "app_id", "pin", "provider"),
    ),
    "EmbeddedSignup": closed(
        {
            "code": text(2048, "The code Meta's Embedded Signup returned to the browser."),
            "waba_id": digits("The WABA the business chose or created."),
            "phone_number_id": digits("The number the business chose."),
            "pin": {
                "type": ["string", "null"],
                "pattern": "^[0-9]{6}$",
                "description": "Registers the number with this two-step verification PIN.",
            },
        },
        optional=("pin",),
    ),
    "NumberRemoved": closed(
        {
            "phone_number_id": {"type": "string"},
            "removed": {"const": True},
            "deregistered": {
                "type": "boolean",
                "description": "Whether Meta confirmed the deregistration.",
            },
            "meta_error": {
                "anyOf": [ref("MessageError"), {"type": "null"}],
                "description": "Meta's refusal of the deregistration (removed here anyway).",
            },
        }
    ),
    "NumberChange": {
        **closed(
            {
                "bot_enabled": {"type": ["boolean", "null"]},
                "throughput_mps": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": 1000,
                    "description": "Sends per second: Meta's 80 by default, up to 1,000.",
                },
            },
            optional=("bot_enabled", "throughput_mps"),
        ),
        "minProperties": 1,
    },
    "NewApp": closed(
        {
            "app_id": digits("Your Meta app's id."),
            "app_secret": text(200, "Verifies that app's webhooks; never shown."),
            "verify_token": text(200, "For Meta's subscription handshake; never shown."),
        }
    ),
    "AppSecrets": {
        **closed(
            {
                "app_secret": text(200, "The app's new secret; never shown."),
                "verify_token": text(200, "A new verify token; never shown."),
            },
            optional=("app_secret", "verify_token"),
        ),
        "minProperties": 1,
    },
    "AppList": page_of("App", single=True),
    "AppDeleted": closed({"app_id": {"type": "string"}, "deleted": {"const": True}}),
    "App": closed(
        {
            "app_id": {"type": "string"},
            "callback_url": {
                "type": "string",
                "format": "uri",
                "description": "Give this to Meta as the app's webhook callback URL.",
            },
            "created_at": TIMESTAMP,
        }
    ),
    # Tenant: messages
    "Template": {
        "type": "object",
        "description": "Meta's template object: name, language and components.",
        "properties": {
            "name": text(512),
            "language": {
                "type": "object",
                "properties": {"code": text(15)},
                "required": ["code"],
            },
            "components": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["name", "language"],
    },
    "NewMessage": {
        "type": "object",
        "description": (
            "Meta's send shape: `type` names the message kind and the object under that "
            "key is exactly what Meta takes for it."
        ),
        "properties": {
            "from": {
                "type": "string",
                "minLength": 1,
                "description": "One of your phone_number_ids.",
                "examples": [EXAMPLE_NUMBER],
            },
            "to": {
                "type": "string",
                "pattern": RECIPIENT,
                "description": "A WhatsApp id (digits) or a user id (`CC.xxxx`).",
            },
            "type": {"enum": SEND_TYPES},
            "text": {
                "type": "object",
                "properties": {"body": text(4096), "preview_url": {"type": "boolean"}},
                "required": ["body"],
            },
            "image": _media_object(caption=True, filename=False),
            "audio": _media_object(caption=False, filename=False),
            "video": _media_object(caption=True, filename=False),
            "document": _media_object(caption=True, filename=True),
            "sticker": _media_object(caption=False, filename=False),
            "location": {
                "type": "object",
                "properties": {
                    "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                    "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                    "name": {"type": "string"},
                    "address": {"type": "string"},
                },
                "required": ["latitude", "longitude"],
            },
            "contacts": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "object"}},
                    "required": ["name"],
                },
            },
            "interactive": {
                "type": "object",
                "properties": {
                    "type": {"enum": INTERACTIVE_TYPES},
                    "action": {"type": "object"},
                    "body": {
                        "type": "object",
                        "properties": {"text": text(1024)},
                        "required": ["text"],
                    },
                },
                "required": ["type", "action"],
            },
            "reaction": {
                "type": "object",
                "properties": {
                    "message_id": text(200),
                    "emoji": {"type": "string", "description": "Empty removes the reaction."},
                },
                "required": ["message_id"],
            },
            "template": ref("Template"),
            "context": {
                "type": "object",
                "description": "Reply to a message: its wamid.",
                "properties": {"message_id": text(200)},
                "required": ["message_id"],
            },
            "idempotency_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "Repeat a send safely: the same key returns the first message.",
            },
            "fallback_template": {
                **ref("Template"),
                "description": "Sent instead when the customer-service window is closed.",
            },
            "biz_opaque_callback_data": text(512),
        },
        "required": ["from", "to", "type"],
        "additionalProperties": False,
        "oneOf": [
            {"properties": {"type": {"const": kind}}, "required": [kind]} for kind in SEND_TYPES
        ],
    },
    "Queued": closed({"id": UUID, "status": {"enum": MESSAGE_STATUSES}}),
    "MessageError": {
        "type": "object",
        "description": "Meta's error as it came: its code, title and message.",
        "properties": {
            "code": {"type": ["integer", "null"]},
            "title": {"type": ["string", "null"]},
            "message": {"type": ["string", "null"]},
        },
    },
    "Message": closed(
        {
            "id": UUID,
            "wamid": {"type": ["string", "null"]},
            "from": {"type": "string", "description": "The phone_number_id."},
            "to": {"type": ["string", "null"]},
            "direction": {"enum": ["in", "out"]},
            "type": {"type": "string"},
            "status": {"enum": MESSAGE_STATUSES},
            "errors": {"type": "array", "items": ref("MessageError")},
            "text": {"type": ["string", "null"], "description": "Body, caption or transcript."},
            "used_fallback_template": {"type": "boolean"},
            "pricing": {"type": ["object", "null"]},
            "attempts": {"type": "integer", "minimum": 0},
            "idempotency_key": {"type": ["string", "null"]},
            "created_at": TIMESTAMP,
            "accepted_at": nullable(TIMESTAMP),
            "status_at": nullable(TIMESTAMP),
        }
    ),
    # Tenant: media
    "MediaUpload": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "type": {"enum": ["image", "audio", "video", "document", "sticker"]},
            "from": {"type": "string", "maxLength": 30, "description": "Your phone_number_id."},
            "voice": {
                "enum": ["true", "false"],
                "description": "true: convert audio to an OGG/Opus voice note first.",
            },
        },
        "required": ["file", "type", "from"],
        "additionalProperties": False,
    },
    "MediaFromUrl": closed(
        {
            "from": text(30, "Your phone_number_id."),
            "type": {"enum": ["image", "audio", "video", "document", "sticker"]},
            "url": text(4000, "An http(s) URL we download the file from."),
            "voice": {"type": ["boolean", "null"]},
            "filename": nullable(text(200)),
        },
        optional=("voice", "filename"),
    ),
    "MediaUploaded": closed(
        {
            "id": {"type": "string", "description": "Meta's media id, for a send's `id`."},
            "mime_type": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "size": {"type": "integer", "minimum": 1},
        }
    ),
    # Tenant: contacts and their messages
    "Contact": closed(
        {
            "wa_id": {"type": ["string", "null"]},
            "user_id": {"type": ["string", "null"]},
            "name": {"type": ["string", "null"]},
            "username": {"type": ["string", "null"]},
            "last_inbound_at": nullable(TIMESTAMP),
            "window_open": {
                "type": "boolean",
                "description": "Whether a free-form message may be sent now.",
            },
            "window_expires_at": nullable(TIMESTAMP),
            "bot_paused": {"type": "boolean"},
        }
    ),
    "ContactPage": page_of("Contact"),
    "ContactMessage": closed(
        {
            "id": UUID,
            "wamid": {"type": ["string", "null"]},
            "direction": {"enum": ["in", "out"]},
            "type": {"type": "string"},
            "text": {"type": ["string", "null"]},
            "status": {"enum": MESSAGE_STATUSES},
            "created_at": TIMESTAMP,
        }
    ),
    "ContactMessagePage": page_of("ContactMessage"),
    # Tenant: events forwarded to the tenant's own webhook
    "WebhookSetting": closed(
        {
            "url": {
                **text(2000, "Where we POST the events: an absolute http(s) URL."),
                "format": "uri",
            },
            "events": {
                "type": "array",
                "minItems": 1,
                "items": {"enum": FORWARDED_EVENTS},
            },
        }
    ),
    "WebhookSet": closed(
        {
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"enum": FORWARDED_EVENTS}},
            "secret": {
                "type": "string",
                "description": "Signs every forwarded event; shown this once.",
            },
        }
    ),
    "Webhook": closed(
        {
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"enum": FORWARDED_EVENTS}},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        }
    ),
    "Delivery": closed(
        {
            "id": {**UUID, "description": "The X-WA-Cloud-Delivery header, same on retries."},
            "event": {"enum": FORWARDED_EVENTS},
            "state": {"enum": DELIVERY_STATES},
            "attempts": {"type": "integer", "minimum": 0},
            "last_status": {
                "type": ["integer", "null"],
                "description": "Your endpoint's last HTTP status.",
            },
            "last_error": {"type": ["string", "null"]},
            "created_at": TIMESTAMP,
            "delivered_at": nullable(TIMESTAMP),
        }
    ),
    "DeliveryPage": page_of("Delivery"),
    "ForwardedEvent": closed(
        {
            "id": {**UUID, "description": "Also in X-WA-Cloud-Delivery: drop repeats by it."},
            "event": {"enum": FORWARDED_EVENTS},
            "created_at": TIMESTAMP,
            "data": {"type": "object"},
        }
    ),
    # Webhooks from Meta
    "MetaNotification": {
        "type": "object",
        "description": "Meta's webhook payload (`object`, `entry[]`), stored before the 200.",
    },
}


def _error_response(description: str) -> Schema:
    return ok(description, ref("Error"))


RESPONSES: Final[dict[str, Schema]] = {
    "BadRequest": _error_response(
        "Malformed: the body is not JSON, or a query parameter (limit, cursor) is invalid."
    ),
    "Unauthorized": _error_response("No credentials, or not valid ones."),
    "Forbidden": _error_response("Not allowed: the tenant is deactivated (`tenant_inactive`)."),
    "NotFound": _error_response("Not found, or not yours."),
    "Conflict": _error_response("Conflicts with what exists."),
    "PayloadTooLarge": _error_response("The body is larger than the limit."),
    "Unprocessable": _error_response("Valid JSON that breaks a rule; `code` says which."),
    "Unavailable": _error_response("A dependency (the database, Meta, mail) is down; retry."),
    "RateLimited": {
        **_error_response(
            "Tenant routes: this API key is over its request rate (`rate_limited`); wait the "
            "`Retry-After` seconds."
        ),
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    },
}

PARAMETERS: Final[dict[str, Schema]] = {
    "Limit": {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
    "Cursor": {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "The `next` of the previous page.",
        "schema": {"type": "string"},
    },
    "TenantId": {"name": "tenant_id", "in": "path", "required": True, "schema": UUID},
    "KeyId": {"name": "key_id", "in": "path", "required": True, "schema": UUID},
    "MessageId": {"name": "message_id", "in": "path", "required": True, "schema": UUID},
    "AppId": {
        "name": "app_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": DIGITS},
    },
    "PhoneNumberId": {
        "name": "phone_number_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": DIGITS},
    },
    "PhoneNumberIdQuery": {
        "name": "phone_number_id",
        "in": "query",
        "required": True,
        "description": "The number whose contacts these are.",
        "schema": {"type": "string", "pattern": DIGITS, "examples": [EXAMPLE_NUMBER]},
    },
}

_LIST = [param("Limit"), param("Cursor")]
_HUB = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
    for name in ("hub.mode", "hub.verify_token", "hub.challenge")
]
_SIGNATURE = {
    "name": "X-Hub-Signature-256",
    "in": "header",
    "required": True,
    "description": "`sha256=` and the HMAC-SHA256 of the raw body with the app secret.",
    "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
}
_HTML: Final[Schema] = {"type": "string"}


def _paths() -> dict[str, Schema]:
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
    tenant_id = [param("TenantId")]
    return {
        # Webhooks from Meta ----------------------------------------------------------------
        "/webhook": {
            "get": operation(
                "verifyPlatformWebhook",
                "Meta's subscription handshake for the platform app",
                tag="webhooks",
                parameters=_HUB,
                responses=handshake,
            ),
            "post": operation(
                "receivePlatformWebhook",
                "A webhook delivery from Meta to the platform app",
                tag="webhooks",
                parameters=[_SIGNATURE],
                body=json_body(ref("MetaNotification")),
                responses=webhook_post,
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
            "get": operation(
                "verifyAppWebhook",
                "Meta's subscription handshake for a tenant's own app",
                tag="webhooks",
                parameters=_HUB,
                responses={**handshake, "404": err("NotFound"), "503": err("Unavailable")},
            ),
            "post": operation(
                "receiveAppWebhook",
                "A webhook delivery from Meta to a tenant's own app (its secret verifies it)",
                tag="webhooks",
                parameters=[_SIGNATURE],
                body=json_body(ref("MetaNotification")),
                responses={**webhook_post, "404": err("NotFound")},
            ),
        },
        # Operations ----------------------------------------------------------------------
        "/healthz": {
            "get": operation(
                "healthz",
                "The process is alive",
                tag="ops",
                responses={"200": ok("Alive.", ref("Health"))},
            )
        },
        "/readyz": {
            "get": operation(
                "readyz",
                "The database is reachable and its schema current",
                tag="ops",
                responses={
                    "200": ok("Ready.", ref("Ready")),
                    "503": ok(
                        "`database_unavailable`, `migrations_pending`, or `worker_degraded` "
                        "(a worker loop of this process died and is restarting).",
                        ref("Error"),
                    ),
                },
            )
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "Prometheus metrics",
                tag="ops",
                description="With `WA_METRICS_TOKEN` set: `Authorization: Bearer <it>`.",
                responses={
                    "200": ok(
                        "Prometheus text format 0.0.4.",
                        {"type": "string"},
                        media_type="text/plain",
                    ),
                    "401": err("Unauthorized"),
                },
            )
        },
        "/openapi.json": {
            "get": operation(
                "openapi",
                "This document",
                tag="ops",
                responses={"200": ok("OpenAPI 3.1.", {"type": "object"})},
            )
        },
        # Pages ---------------------------------------------------------------------------
        "/t/{token}": {
            "get": operation(
                "statusPage",
                "A tenant's status page, opened from the signed link of an invitation",
                tag="pages",
                parameters=[
                    {
                        "name": "token",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 512},
                    }
                ],
                responses={
                    "200": ok("The page.", _HTML, media_type="text/html"),
                    "403": {
                        "description": "The tenant is deactivated: a friendly page.",
                        "content": {
                            "text/html": {"schema": _HTML},
                            "application/json": {"schema": ref("Error")},
                        },
                    },
                    "404": {
                        "description": "Expired, tampered with or unknown: a friendly page.",
                        "content": {
                            "text/html": {"schema": _HTML},
                            "application/json": {"schema": ref("Error")},
                        },
                    },
                    "410": {
                        "description": "Replaced by a newer invitation's link: a friendly page.",
                        "content": {
                            "text/html": {"schema": _HTML},
                            "application/json": {"schema": ref("Error")},
                        },
                    },
                    "503": err("Unavailable"),
                },
            )
        },
        # Admin ---------------------------------------------------------------------------
        "/v1/admin/tenants": {
            "post": operation(
                "createTenant",
                "Create a tenant and its first API key",
                tag="admin",
                security="admin",
                body=json_body(ref("NewTenant")),
                responses={
                    "201": ok("Created; the key is shown this once.", ref("TenantCreated")),
                    **_errors(400, 413, 422),
                },
            ),
            "get": operation(
                "listTenants",
                "List tenants, oldest first",
                tag="admin",
                security="admin",
                parameters=_LIST,
                responses={"200": ok("A page of tenants.", ref("TenantPage")), **_errors(400)},
            ),
        },
        "/v1/admin/tenants/{tenant_id}": {
            "parameters": tenant_id,
            "get": operation(
                "getTenant",
                "Read a tenant",
                tag="admin",
                security="admin",
                responses={"200": ok("The tenant.", ref("Tenant")), **_errors(404)},
            ),
            "patch": operation(
                "updateTenant",
                "Activate or deactivate a tenant; rename it; change its email",
                tag="admin",
                security="admin",
                body=json_body(ref("TenantChange")),
                responses={
                    "200": ok("The tenant as changed.", ref("Tenant")),
                    **_errors(400, 404, 413, 422),
                },
            ),
            "delete": operation(
                "deleteTenant",
                "Delete a deactivated tenant and everything it owns",
                tag="admin",
                security="admin",
                description=(
                    "Numbers (and their sealed tokens), contacts, messages, statuses, events, "
                    "media, forwards, its webhook, apps, API keys, its audit rows, and the "
                    "templates of WABAs no other tenant uses, in one transaction. 409 "
                    "`tenant_active` unless the tenant was deactivated first. Raw webhook "
                    "bodies are not per tenant: the retention job clears them."
                ),
                responses={
                    "200": ok("Deleted; what was removed.", ref("TenantDeleted")),
                    **_errors(404, 409),
                },
            ),
        },
        "/v1/admin/tenants/{tenant_id}/keys": {
            "parameters": tenant_id,
            "post": operation(
                "createApiKey",
                "Another API key for the tenant (rotation: create, move over, revoke the old)",
                tag="admin",
                security="admin",
                responses={
                    "201": ok("Created; the key is shown this once.", ref("ApiKeyCreated")),
                    **_errors(404),
                },
            ),
            "get": operation(
                "listApiKeys",
                "The tenant's API keys, revoked ones included (never the keys themselves)",
                tag="admin",
                security="admin",
                responses={"200": ok("All the keys.", ref("ApiKeyList")), **_errors(404)},
            ),
        },
        "/v1/admin/tenants/{tenant_id}/keys/{key_id}": {
            "parameters": [*tenant_id, param("KeyId")],
            "delete": operation(
                "revokeApiKey",
                "Revoke an API key",
                tag="admin",
                security="admin",
                responses={"200": ok("The key, revoked.", ref("ApiKey")), **_errors(404)},
            ),
        },
        "/v1/admin/tenants/{tenant_id}/invite": {
            "parameters": tenant_id,
            "post": operation(
                "inviteTenant",
                "Mail the tenant a signed, expiring link to its status page",
                tag="admin",
                security="admin",
                description=(
                    "To the tenant's email, or to `email` when given. 202: accepted by the mail "
                    "server (in dev, logged when none is configured), not yet delivered. Every "
                    "invitation revokes the links sent before it, even when the mail fails "
                    "(503 `mail_unavailable`, or `mail_not_configured` without SMTP_URL)."
                ),
                body=json_body(ref("Invitation"), required=False),
                responses={
                    "202": ok("Sent.", ref("InvitationSent")),
                    **_errors(400, 404, 413, 422),
                },
            ),
        },
        "/v1/admin/events": {
            "get": operation(
                "listAuditEvents",
                "The audit log of the whole platform, newest first",
                tag="admin",
                security="admin",
                parameters=[
                    {
                        "name": "tenant_id",
                        "in": "query",
                        "required": False,
                        "description": "Only this tenant's rows (an unknown id is a 404).",
                        "schema": UUID,
                    },
                    *_LIST,
                ],
                responses={"200": ok("A page of events.", ref("AuditPage")), **_errors(400, 404)},
            ),
        },
        # Tenant --------------------------------------------------------------------------
        "/v1/numbers": {
            "post": operation(
                "createNumber",
                "Register a number",
                tag="tenant",
                security="tenant",
                body=json_body(ref("NewNumber")),
                responses={
                    "201": ok("Registered (never the token or PIN).", ref("Number")),
                    **_errors(400, 403, 409, 413, 422),
                },
            ),
            "get": operation(
                "listNumbers",
                "Your numbers",
                tag="tenant",
                security="tenant",
                responses={"200": ok("All your numbers.", ref("NumberList")), **_errors()},
            ),
        },
        "/v1/numbers/{phone_number_id}": {
            "parameters": [param("PhoneNumberId")],
            "get": operation(
                "getNumber",
                "Read one of your numbers",
                tag="tenant",
                security="tenant",
                responses={"200": ok("The number.", ref("Number")), **_errors(404)},
            ),
            "patch": operation(
                "updateNumber",
                "Turn the bot on or off; set the send rate",
                tag="tenant",
                security="tenant",
                body=json_body(ref("NumberChange")),
                responses={
                    "200": ok("The number as changed.", ref("Number")),
                    **_errors(400, 403, 404, 413, 422),
                },
            ),
            "delete": operation(
                "deleteNumber",
                "Deregister the number at Meta and forget its token and PIN (history stays)",
                tag="tenant",
                security="tenant",
                responses={"200": ok("Removed.", ref("NumberRemoved")), **_errors(403, 404)},
            ),
        },
        "/v1/onboarding/embedded-signup": {
            "post": operation(
                "embeddedSignup",
                "Register a number from Meta's Embedded Signup",
                tag="tenant",
                security="tenant",
                description=(
                    "Exchanges the code for a business token with the platform app, then "
                    "onboards the number exactly as POST /v1/numbers does."
                ),
                body=json_body(ref("EmbeddedSignup")),
                responses={
                    "201": ok("Registered (never the token or PIN).", ref("Number")),
                    **_errors(400, 403, 409, 413, 422),
                },
            ),
        },
        "/v1/apps": {
            "post": operation(
                "createApp",
                "Register your own Meta app",
                tag="tenant",
                security="tenant",
                description=(
                    "Ownership is proven first: Graph `GET /{app_id}` with the app access token "
                    "`app_id|app_secret` must answer with that id (422 `app_not_verified`)."
                ),
                body=json_body(ref("NewApp")),
                responses={
                    "201": ok("Registered; point Meta at callback_url.", ref("App")),
                    **_errors(400, 403, 409, 413, 422),
                },
            ),
            "get": operation(
                "listApps",
                "Your own Meta apps",
                tag="tenant",
                security="tenant",
                responses={"200": ok("All your apps.", ref("AppList")), **_errors()},
            ),
        },
        "/v1/apps/{app_id}": {
            "parameters": [param("AppId")],
            "put": operation(
                "updateApp",
                "A new app secret (proven with Meta again) or verify token",
                tag="tenant",
                security="tenant",
                body=json_body(ref("AppSecrets")),
                responses={
                    "200": ok("Updated.", ref("App")),
                    **_errors(400, 403, 404, 413, 422),
                },
            ),
            "delete": operation(
                "deleteApp",
                "Forget one of your apps (409 while numbers are bound to it)",
                tag="tenant",
                security="tenant",
                responses={
                    "200": ok("Deleted.", ref("AppDeleted")),
                    **_errors(403, 404, 409),
                },
            ),
        },
        "/v1/messages": {
            "post": operation(
                "sendMessage",
                "Send a message through the durable outbox",
                tag="tenant",
                security="tenant",
                description=(
                    "A free-form message to a contact whose 24-hour window is closed, with no "
                    "fallback_template, is refused: 422 `outside_customer_service_window`."
                ),
                body=json_body(ref("NewMessage")),
                responses={
                    "202": ok("Queued.", ref("Queued")),
                    "200": ok(
                        "An earlier message with the same idempotency_key, as it is now.",
                        ref("Queued"),
                    ),
                    **_errors(400, 403, 404, 413, 422),
                },
            ),
        },
        "/v1/messages/{message_id}": {
            "parameters": [param("MessageId")],
            "get": operation(
                "getMessage",
                "A message and where it is",
                tag="tenant",
                security="tenant",
                responses={"200": ok("The message.", ref("Message")), **_errors(404)},
            ),
        },
        "/v1/media": {
            "post": operation(
                "uploadMedia",
                "Upload media to Meta for a number, checked against Meta's rules first",
                tag="tenant",
                security="tenant",
                description=(
                    "A multipart form with the file, or JSON naming a URL we download it from; "
                    "a URL whose host is not a public address (loopback, private, link-local, "
                    "...), on any redirect too, is 422 `url_not_allowed`."
                ),
                body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": ref("MediaUpload")},
                        "application/json": {"schema": ref("MediaFromUrl")},
                    },
                },
                responses={
                    "201": ok("Uploaded.", ref("MediaUploaded")),
                    **_errors(400, 403, 404, 413, 422),
                },
            ),
        },
        "/v1/media/{media_id}": {
            "parameters": [
                {
                    "name": "media_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "maxLength": 255},
                }
            ],
            "get": operation(
                "getMedia",
                "The bytes of an inbound media file we downloaded from Meta",
                tag="tenant",
                security="tenant",
                responses={
                    "200": {
                        "description": "The file, as an attachment, in its own MIME type.",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "409": ok("Not downloaded yet, or the download failed.", ref("Error")),
                    **_errors(404),
                },
            ),
        },
        "/v1/contacts": {
            "get": operation(
                "listContacts",
                "Contacts of one of your numbers, with their 24-hour window",
                tag="tenant",
                security="tenant",
                parameters=[param("PhoneNumberIdQuery"), *_LIST],
                responses={
                    "200": ok("A page of contacts.", ref("ContactPage")),
                    **_errors(400, 404),
                },
            ),
        },
        "/v1/contacts/{contact}/messages": {
            "get": operation(
                "contactMessages",
                "A contact's messages in both directions, newest first",
                tag="tenant",
                security="tenant",
                parameters=[
                    {
                        "name": "contact",
                        "in": "path",
                        "required": True,
                        "description": "The contact's wa_id or user_id.",
                        "schema": {"type": "string", "minLength": 1},
                    },
                    param("PhoneNumberIdQuery"),
                    *_LIST,
                ],
                responses={
                    "200": ok("A page of messages.", ref("ContactMessagePage")),
                    **_errors(400, 404),
                },
            ),
        },
        "/v1/webhooks": {
            "put": operation(
                "putWebhook",
                "Set your webhook: where we POST the events you choose",
                tag="tenant",
                security="tenant",
                description=(
                    "Replaces the URL and events; every PUT makes a new secret. A URL whose "
                    "host is not a public address, or that carries credentials, is 422 "
                    "`url_not_allowed` (checked again at every delivery)."
                ),
                body=json_body(ref("WebhookSetting")),
                responses={
                    "200": ok("Set; the secret is shown this once.", ref("WebhookSet")),
                    **_errors(400, 403, 413, 422),
                },
            ),
            "get": operation(
                "getWebhook",
                "Your webhook (never its secret)",
                tag="tenant",
                security="tenant",
                responses={"200": ok("The webhook.", ref("Webhook")), **_errors(404)},
            ),
            "delete": operation(
                "deleteWebhook",
                "Stop forwarding events; pending deliveries are dropped",
                tag="tenant",
                security="tenant",
                responses={"204": {"description": "Deleted."}, **_errors(403, 404)},
            ),
        },
        "/v1/webhooks/deliveries": {
            "get": operation(
                "listWebhookDeliveries",
                "Events forwarded to your webhook, newest first",
                tag="tenant",
                security="tenant",
                parameters=[
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": DELIVERY_STATES},
                    },
                    *_LIST,
                ],
                responses={
                    "200": ok("A page of deliveries.", ref("DeliveryPage")),
                    **_errors(400),
                },
            ),
        },
        "/v1/events": {
            "get": operation(
                "listEvents",
                "Your rows of the audit log, newest first",
                tag="tenant",
                security="tenant",
                parameters=_LIST,
                responses={"200": ok("A page of events.", ref("AuditPage")), **_errors(400)},
            ),
        },
    }


def _version() -> str:
    try:
        return metadata.version("wa-cloud")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_document() -> Schema:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "wa-cloud",
            "version": _version(),
            "summary": "Multi-tenant WhatsApp Cloud API service.",
            "description": (
                'Errors are JSON `{"error": {"code", "message"}}`: 400 malformed, 401 no '
                "credentials, 403 refused, 404 not found or not yours, 409 conflict, 413 too "
                "large, 422 valid JSON that breaks a rule, 503 a dependency is down. Lists "
                'are `{"data": [...], "next": cursor or null}`.'
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "webhooks", "description": "From Meta: signed with the app secret."},
            {"name": "ops", "description": "Liveness, readiness, metrics, this document."},
            {"name": "pages", "description": "HTML pages opened from signed links."},
            {"name": "admin", "description": "The platform operator (WA_ADMIN_TOKEN)."},
            {"name": "tenant", "description": "A business, with one of its API keys."},
        ],
        "paths": _paths(),
        "webhooks": {
            "forwardedEvent": {
                "post": {
                    "operationId": "forwardedEvent",
                    "summary": "What we POST to your webhook (PUT /v1/webhooks)",
                    "description": (
                        "Signed: `X-WA-Cloud-Signature: sha256=<hex HMAC-SHA256(secret, "
                        '"<X-WA-Cloud-Timestamp>.<raw body>")>`. Answer 2xx; anything else '
                        "but 408/429 is not retried, network errors and 5xx are, with backoff."
                    ),
                    "parameters": [
                        {
                            "name": name,
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                        for name in (
                            "X-WA-Cloud-Signature",
                            "X-WA-Cloud-Timestamp",
                            "X-WA-Cloud-Delivery",
                            "X-WA-Cloud-Event",
                        )
                    ],
                    "requestBody": json_body(ref("ForwardedEvent")),
                    "responses": {"200": {"description": "Any 2xx: delivered."}},
                }
            }
        },
        "components": {
            "securitySchemes": {
                "admin": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The platform's WA_ADMIN_TOKEN.",
                },
                "tenant": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the tenant's API keys.",
                },
            },
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "parameters": PARAMETERS,
        },
    }


DOCUMENT: Final = build_document()
_BODY: Final = json.dumps(DOCUMENT, separators=(",", ":")).encode()


def described_operations() -> list[tuple[str, str]]:
    """Every (METHOD, path) the document describes, sorted."""
    return sorted(
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    )


async def spec(request: Request) -> Response:
    return Response(_BODY, media_type="application/json")
