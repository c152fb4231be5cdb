"""`components` of the document: the named schemas, responses, parameters and security
schemes that `ref`, `err` and `param` point to."""

from __future__ import annotations

from typing import Final

from wa_cloud.ai import memory
from wa_cloud.ai.config import COLUMNS, REASONING_EFFORTS
from wa_cloud.ai.fields import FIELD_NAME
from wa_cloud.ai.files import FILE_KINDS, MAX_DESCRIPTION, MAX_TITLE
from wa_cloud.ai.usage import FEATURES
from wa_cloud.api.contacts import MAX_PAUSE_MINUTES
from wa_cloud.api.credits import MAX_CREDITS_MOVE
from wa_cloud.api.openapi.schema import (
    DIGITS,
    RECIPIENT,
    TIMESTAMP,
    UUID,
    Schema,
    closed,
    digits,
    nullable,
    ok,
    page_of,
    ref,
    text,
)
from wa_cloud.campaigns.broadcasts import SHOWN_SKIPPED
from wa_cloud.campaigns.recipients import MAX_RECIPIENTS, MAX_VARIABLE_LENGTH
from wa_cloud.outbox import compose
from wa_cloud.outbox import template_rules as rules

# A registered number's id in the examples (also the corpus's number A).
EXAMPLE_NUMBER: Final = "106540352242922"


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
SESSION_STATES: Final = ["connecting", "qr", "open", "closed", "refused", "logged_out"]
USAGE_FEATURES: Final = sorted(FEATURES)
INTERACTIVE_TYPES: Final = sorted(compose.INTERACTIVE_TYPES)
BROADCAST_STATUSES: Final = ["scheduled", "running", "paused", "done", "cancelled"]
BROADCAST_CATEGORIES: Final = [*rules.CATEGORIES, "SERVICE"]
OPT_OUT_SOURCES: Final = ["keyword", "user_preferences", "api", "meta_131050"]
# A phone as people write it: digits, spaces, ( ) . - / and a leading + (or 00).
PHONE: Final = r"^[\s().\-/]*\+?[0-9\s().\-/]+$"

_TENANT: Final[dict[str, Schema]] = {
    "id": UUID,
    "name": {"type": "string"},
    "email": {"type": ["string", "null"]},
    "active": {
        "type": "boolean",
        "description": "False: sends, replies and changes are refused; inbound is still stored.",
    },
    "credits_balance": {
        "type": "integer",
        "minimum": 0,
        "description": "What the assistant's replies are paid from (POST .../credits adds).",
    },
    "created_at": TIMESTAMP,
}

_API_KEY: Final[dict[str, Schema]] = {
    "id": UUID,
    "prefix": {"type": "string", "description": "The key's first characters, to tell keys apart."},
}

# A contact as lists and pause/resume show it; GET /v1/contacts/{contact} adds its messages'.
_CONTACT: Final[dict[str, Schema]] = {
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
    "bot_paused": {
        "type": "boolean",
        "description": "Whether the assistant keeps out of this conversation now.",
    },
    "paused_until": {
        **nullable(TIMESTAMP),
        "description": "When the pause ends; null: not paused, or until resumed.",
    },
    "tags": {
        "type": "array",
        "items": {"type": "string"},
        "description": "Normalised: trimmed, lower case.",
    },
    "notes": {"type": ["string", "null"]},
    "fields": {
        "type": "object",
        "additionalProperties": {"$ref": "#/components/schemas/ContactField"},
        "description": "By name: set with PATCH, or extracted by the assistant "
        "(the bot's extract_fields); shown to it as {{contact_fields}}.",
    },
}


def _media_object(*, caption: bool, filename: bool) -> Schema:
    """An image/audio/video/document/sticker object in Meta's send shape: an `id` from
    `POST /v1/media` or a `link`, exactly one of them."""
    # `False`: JSON Schema's schema that nothing matches (this kind has no such field).
    properties: dict[str, Schema | bool] = {
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
                    "violations": {
                        "type": "array",
                        "items": ref("TemplateViolation"),
                        "description": "`template_invalid`: every rule of Meta's it breaks.",
                    },
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
    "CreditsChange": closed(
        {
            "amount": {
                "type": "integer",
                "minimum": -MAX_CREDITS_MOVE,
                "maximum": MAX_CREDITS_MOVE,
                "not": {"const": 0},
                "description": (
                    "Credits to add; negative corrects downwards, never below a balance of 0 "
                    "(422 `insufficient_credits`)."
                ),
            },
            "reason": text(500, "Why, for the ledger: e.g. an invoice number."),
        }
    ),
    "CreditsAdded": closed(
        {
            "tenant_id": UUID,
            "credits_balance": {"type": "integer", "minimum": 0},
            "entry": ref("LedgerEntry"),
        }
    ),
    "LedgerEntry": closed(
        {
            "id": {"type": "integer", "minimum": 1},
            "amount": {"type": "integer", "description": "Added (positive) or taken (negative)."},
            "balance_before": {"type": "integer", "minimum": 0},
            "balance_after": {"type": "integer", "minimum": 0},
            "reason": {
                "type": "string",
                "description": "`reply` for an assistant's reply; the operator's reason otherwise.",
            },
            "phone_number_id": {
                "type": ["string", "null"],
                "description": "The number whose reply it paid for (null: the operator's).",
            },
            "created_at": TIMESTAMP,
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
            "waba_id": {"type": ["string", "null"], "description": "Null for a web session."},
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
            "state": {"enum": SESSION_STATES, "description": "A web session's only."},
        },
        optional=("state",),
    ),
    "NewWebSessionNumber": closed(
        {
            "provider": {"const": "websession"},
            "display_phone_number": digits("The number whose phone will scan the QR code."),
            "phone_number_id": nullable(digits("Its id here; default: the display number.")),
            "gateway": closed(
                {
                    "url": text(2048, "The Evolution API v2 gateway's base URL."),
                    "api_key": text(512, "The gateway's API key; never shown."),
                }
            ),
        },
        optional=("phone_number_id",),
    ),
    "WebSessionQr": closed(
        {
            "state": {"enum": SESSION_STATES},
            "qr_base64": {
                "type": ["string", "null"],
                "description": "A data:image/png;base64 URL while the session waits for a scan.",
            },
            "pairing_code": {"type": ["string", "null"]},
            "reason": {"type": ["string", "null"], "description": "Why it is refused or closed."},
            "since": TIMESTAMP,
        },
        optional=("reason", "since"),
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
            "biz_opaque_callback_data": {
                **text(512),
                "description": "Echoed in the message's statuses. The prefix 'broadcast:' is"
                " reserved for campaign sends.",
            },
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
    "Contact": closed(_CONTACT),
    "ContactField": closed(
        {
            "value": {"type": "string"},
            "source_message_id": {
                **nullable(UUID),
                "description": "The message the assistant read it from; null: set by the API.",
            },
            "updated_at": TIMESTAMP,
            "by": {"enum": ["model", "api"]},
        }
    ),
    "ContactDetail": closed(
        {
            **_CONTACT,
            "first_message_at": nullable(TIMESTAMP),
            "last_message_at": nullable(TIMESTAMP),
            "messages_in": {"type": "integer", "minimum": 0},
            "messages_out": {"type": "integer", "minimum": 0},
        }
    ),
    "ContactUpdate": {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "maxItems": memory.MAX_TAGS,
                "items": text(memory.MAX_TAG_LENGTH),
                "description": "Replaces the contact's tags (normalised: trimmed, lower case).",
            },
            "notes": {
                "type": ["string", "null"],
                "maxLength": memory.MAX_NOTES_LENGTH,
                "description": "Replaces the notes; null or blank clears them.",
            },
            "fields": {
                "type": "object",
                "propertyNames": {"pattern": FIELD_NAME.pattern},
                "additionalProperties": {
                    "anyOf": [text(memory.MAX_VALUE_LENGTH), {"type": "null"}]
                },
                "description": f"Merged into the contact's fields (at most {memory.MAX_FIELDS}); "
                "null removes a field.",
            },
        },
        "additionalProperties": False,
    },
    "ContactPage": page_of("Contact"),
    "PauseRequest": closed(
        {
            "phone_number_id": digits("The number of the conversation."),
            "minutes": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "maximum": MAX_PAUSE_MINUTES,
                "description": "How long; absent or null: until resumed.",
            },
        },
        optional=("minutes",),
    ),
    "ResumeRequest": closed({"phone_number_id": digits("The number of the conversation.")}),
    "FollowUp": closed(
        {
            "id": {"type": "integer"},
            "kind": {
                "enum": ["follow_up", "reminder"],
                "description": "The assistant's follow-up (a bot rule), or a reminder you set.",
            },
            "state": {
                "enum": ["scheduled", "sending", "sent", "cancelled", "skipped", "failed"],
                "description": "sent: queued to the customer (message_id says how it went).",
            },
            "reason": {
                "type": ["string", "null"],
                "description": "Why it was cancelled, skipped or failed (e.g. 'the customer "
                "wrote', 'conversation paused', 'outside the customer-service window and no "
                "template').",
            },
            "rule": {
                "type": ["integer", "null"],
                "description": "The index of its rule in the bot's follow_ups (a follow-up).",
            },
            "attempt": {"type": "integer", "minimum": 1},
            "max": {"type": "integer", "minimum": 1},
            "due_at": TIMESTAMP,
            "text": {
                "type": ["string", "null"],
                "description": "What it says (a model-written follow-up: once written).",
            },
            "template": {"type": ["object", "null"]},
            "message_id": {
                **nullable(UUID),
                "description": "The message it queued: GET /v1/messages/{id}.",
            },
            "created_at": TIMESTAMP,
            "finished_at": nullable(TIMESTAMP),
        }
    ),
    "FollowUpPage": page_of("FollowUp"),
    "NewReminder": closed(
        {
            "phone_number_id": digits("The number of the conversation."),
            "at": {
                "type": "string",
                "format": "date-time",
                "description": "When: RFC 3339 with its offset, in the future, at most a year "
                "ahead.",
            },
            "text": {
                **text(4096),
                "description": "Sent only inside the 24-hour window (else skipped).",
            },
            "template": {**ref("Template"), "description": "Sent at any time."},
        },
        optional=("text", "template"),
    ),
    "ContactMessage": closed(
        {
            "id": UUID,
            "wamid": {"type": ["string", "null"]},
            "direction": {"enum": ["in", "out"]},
            "type": {"type": "string"},
            "text": {"type": ["string", "null"]},
            "purged": {
                "type": "boolean",
                "description": "Retention cleared its text and media (the number's bot "
                "retention_hours); the message itself stays.",
            },
            "status": {"enum": MESSAGE_STATUSES},
            "created_at": TIMESTAMP,
        }
    ),
    "ContactMessagePage": page_of("ContactMessage"),
    # Tenant: the assistant, credits and usage
    "BotSettings": closed(
        {
            "enabled": {"type": ["boolean", "null"], "default": True},
            "instructions": nullable(
                text(20_000, "The system prompt; {{business_name}} and {{today}} are filled in.")
            ),
            "model": nullable(text(200, "null: the platform's model.")),
            "base_url": nullable(
                text(2000, "An OpenAI-compatible API (http or https); null: the platform's.")
            ),
            "api_key": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": 500,
                "pattern": "^[ -~]*[!-~][ -~]*$",
                "writeOnly": True,
                "description": (
                    "The key for base_url (printable ASCII), sealed and never shown. Omitted: "
                    "the stored key stays while base_url stays the same."
                ),
            },
            "api": {"enum": ["chat", "responses", None]},
            "reasoning_effort": {"enum": [*REASONING_EFFORTS, None]},
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
            "max_output_tokens": {"type": ["integer", "null"], "minimum": 16, "maximum": 32_000},
            "history_turns": {"type": ["integer", "null"], "minimum": 0, "maximum": 200},
            "debounce_seconds": {"type": ["number", "null"], "minimum": 0, "maximum": 60},
            "timezone": nullable(text(64, "An IANA time zone, e.g. America/Bogota.")),
            "owner_phones": {
                "type": ["array", "null"],
                "maxItems": 20,
                # As people write them ("+57 300-111 2233"); stored and shown as wa_id digits
                # (6 to 15 of them).
                "items": {"type": "string", "pattern": "^\\+?[0-9() -]{6,30}$"},
                "description": "Whose WhatsApp commands the assistant takes (pause, resume...), "
                "in international form; shown as their digits.",
            },
            "credits_per_reply": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": 1_000_000,
            },
            "retention_hours": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": 87_600,
                "description": "Conversations are purged after this long; 0 keeps them.",
            },
            "fallback_text": nullable(text(4096)),
            "out_of_credits_text": nullable(text(4096)),
            "media_unavailable_text": nullable(text(4096)),
            "voice_replies": {"type": ["boolean", "null"]},
            "human_takeover_minutes": {
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 43_200,
                "description": "A send through POST /v1/messages pauses the conversation this "
                "long; 0: never.",
            },
            "tools": {
                "type": ["array", "null"],
                "maxItems": 16,
                "items": ref("Tool"),
                "description": "HTTP tools the model may call. A header value null keeps the "
                "stored one while the tool's host stays the same.",
            },
            "extract_fields": {
                "type": ["array", "null"],
                "maxItems": 20,
                "items": ref("ExtractField"),
                "description": "Contact fields the model fills in from the conversation after "
                "each reply; shown to it as {{contact_fields}}.",
            },
            "follow_ups": {
                "type": ["array", "null"],
                "maxItems": 5,
                "items": ref("FollowUpRule"),
                "description": "Write again when the customer has not answered.",
            },
        },
        optional=("enabled", "api_key", *COLUMNS),
    ),
    "ExtractField": closed(
        {
            "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,39}$"},
            "description": {"type": ["string", "null"], "maxLength": 500},
        },
        optional=("description",),
    ),
    "FollowUpRule": closed(
        {
            "after_minutes": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 43_200,
                "description": "Minutes after our last message without an answer.",
            },
            "max": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
            "between": {
                "type": ["array", "null"],
                "items": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
                "minItems": 2,
                "maxItems": 2,
                "description": "Local times of the number's time zone ['09:00', '20:00'].",
            },
            "text": {
                "type": ["string", "null"],
                "maxLength": 4096,
                "description": "Null: written by the model from the conversation.",
            },
            "template": {
                "type": ["object", "null"],
                "description": "Meta's template object: the only follow-up outside the window.",
            },
        },
        optional=("max", "between", "text", "template"),
    ),
    "Tool": closed(
        {
            "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
            "description": {"type": ["string", "null"], "maxLength": 1024},
            "parameters": {
                "type": ["object", "null"],
                "description": 'JSON Schema of the arguments ({"type": "object", ...}).',
            },
            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", None]},
            "url": {
                "type": "string",
                "maxLength": 2000,
                "description": "{{param}} is replaced by the argument, percent-encoded (never "
                "in the host).",
            },
            "headers": {
                "type": ["object", "null"],
                "additionalProperties": {"type": ["string", "null"]},
                "description": "Sealed, write-only: shown with null values.",
            },
            "body": {
                "type": ["string", "null"],
                "maxLength": 16_384,
                "description": "A template: {{param}} is replaced by the argument JSON-escaped "
                "(a string without its quotes).",
            },
            "timeout_seconds": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 30},
        },
        optional=("description", "parameters", "method", "headers", "body", "timeout_seconds"),
    ),
    "ToolCall": closed(
        {
            "id": {"type": "integer"},
            "tool": {"type": "string"},
            "arguments": {"type": "object"},
            "status": {"type": ["integer", "null"], "description": "The tool's HTTP status."},
            "error": {"type": ["string", "null"]},
            "duration_ms": {"type": "integer"},
            "contact": {"type": ["string", "null"]},
            "reply_id": {"type": ["integer", "null"]},
            "created_at": TIMESTAMP,
        }
    ),
    "ToolCallPage": page_of("ToolCall"),
    # Tenant: the files library the assistant sends from (api/files.py)
    "LibraryFile": closed(
        {
            "id": UUID,
            "title": {"type": "string", "description": "What the model names the file by."},
            "description": {"type": "string", "description": "What the model is told of it."},
            "type": {"enum": list(FILE_KINDS), "description": "What it is sent as."},
            "mime_type": {"type": "string"},
            "filename": {"type": "string"},
            "size": {"type": "integer", "minimum": 1},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "created_at": TIMESTAMP,
        }
    ),
    "LibraryFileList": page_of("LibraryFile", single=True),
    "LibraryFileUpload": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "title": text(MAX_TITLE, "Unique per number, whatever its case; one line."),
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
            "type": {
                "enum": list(FILE_KINDS),
                "description": "What it is sent as; by default what its bytes are.",
            },
        },
        "required": ["file", "title"],
        "additionalProperties": False,
    },
    "LibraryFileFromUrl": closed(
        {
            "url": text(4000, "An http(s) URL we download the file from."),
            "title": text(MAX_TITLE, "Unique per number, whatever its case; one line."),
            "description": nullable({"type": "string", "maxLength": MAX_DESCRIPTION}),
            "type": {"enum": [*FILE_KINDS, None]},
            "filename": nullable(text(200)),
        },
        optional=("description", "type", "filename"),
    ),
    "Bot": closed(
        {
            "enabled": {"type": "boolean"},
            "instructions": {"type": "string"},
            "model": {"type": ["string", "null"]},
            "base_url": {"type": ["string", "null"]},
            "api": {"enum": ["chat", "responses", None]},
            "reasoning_effort": {"enum": [*REASONING_EFFORTS, None]},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "max_output_tokens": {"type": "integer", "minimum": 16, "maximum": 32_000},
            "history_turns": {"type": "integer", "minimum": 0, "maximum": 200},
            "debounce_seconds": {"type": "number", "minimum": 0, "maximum": 60},
            "timezone": {"type": "string"},
            "owner_phones": {"type": "array", "items": {"type": "string"}},
            "credits_per_reply": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
            "retention_hours": {"type": "integer", "minimum": 0, "maximum": 87_600},
            "fallback_text": {"type": ["string", "null"]},
            "out_of_credits_text": {"type": ["string", "null"]},
            "media_unavailable_text": {"type": ["string", "null"]},
            "voice_replies": {"type": "boolean"},
            "human_takeover_minutes": {"type": "number", "minimum": 0, "maximum": 43_200},
            "tools": {"type": "array", "items": ref("Tool")},
            "extract_fields": {"type": "array", "items": ref("ExtractField")},
            "follow_ups": {"type": "array", "items": ref("FollowUpRule")},
            "has_api_key": {
                "type": "boolean",
                "description": "A model key is stored for base_url (it is never shown).",
            },
        }
    ),
    "Usage": closed(
        {
            "credits_balance": {"type": "integer", "minimum": 0},
            "ledger": {
                "type": "array",
                "items": ref("LedgerEntry"),
                "description": "Newest first, up to `limit`.",
            },
            "tokens": {
                "type": "array",
                "items": ref("TokenUsage"),
                "description": "Summed over the days asked for (all, without since/until).",
            },
        }
    ),
    "TokenUsage": closed(
        {
            "phone_number_id": {"type": "string"},
            "model": {"type": "string"},
            "feature": {"enum": USAGE_FEATURES},
            "calls": {"type": "integer", "minimum": 0},
            "input_tokens": {"type": "integer", "minimum": 0},
            "output_tokens": {"type": "integer", "minimum": 0},
        }
    ),
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
    # Campaigns: templates, broadcasts, opt-outs
    "TemplateSummary": closed(
        {
            "name": {"type": "string"},
            "language": {"type": "string"},
            "category": {"type": ["string", "null"], "examples": list(rules.CATEGORIES)},
            "status": {
                "type": ["string", "null"],
                "description": "Meta's: APPROVED, PENDING, REJECTED, PAUSED, DISABLED...",
            },
            "rejected_reason": {
                "type": ["string", "null"],
                "description": "Why Meta rejected it (null unless it did).",
            },
            "quality": {
                "type": ["string", "null"],
                "description": "Meta's quality score: GREEN, YELLOW, RED or UNKNOWN.",
            },
            "id": {"type": ["string", "null"], "description": "Meta's template id."},
        }
    ),
    "TemplateList": closed(
        {
            "data": {
                "type": "array",
                "items": ref("TemplateSummary"),
                "description": "Every template of the number's WABA, as Meta lists it now.",
            }
        }
    ),
    "TemplateFile": {
        "type": "object",
        "description": (
            "A template file: the body of Meta's `POST /{waba_id}/message_templates`. Checked "
            "against Meta's rules first (422 `template_invalid` lists every violation)."
        ),
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[a-z0-9_]+$",
                "maxLength": rules.NAME_MAX,
                "description": "The name in the path.",
            },
            "language": {"enum": sorted(rules.SUPPORTED_LANGUAGES)},
            "category": {"enum": list(rules.CATEGORIES)},
            "parameter_format": {"enum": list(rules.PARAMETER_FORMATS)},
            "components": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"enum": list(rules.COMPONENT_ORDER)},
                        "format": {"enum": list(rules.HEADER_FORMATS)},
                        "text": {"type": "string"},
                        "example": {"type": "object"},
                        "buttons": {"type": "array", "items": {"type": "object"}},
                    },
                    "required": ["type"],
                },
            },
        },
        "required": ["name", "language", "category", "components"],
    },
    "TemplateViolation": closed(
        {
            "component": {
                "type": "string",
                "examples": ["template", "BODY", "BUTTONS[0]", "components[2]"],
            },
            "rule": {"type": "string", "examples": ["invalid_name", "missing_example"]},
            "message": {"type": "string"},
        }
    ),
    "TemplateChanged": closed(
        {
            "name": {"type": "string"},
            "language": {"type": "string"},
            "action": {
                "enum": ["create", "edit", "unchanged"],
                "description": "create: 201; edit or unchanged: 200.",
            },
            "status": {
                "type": "string",
                "description": "PENDING (Meta reviews it), or the status of an unchanged one.",
            },
        }
    ),
    "TemplateDeleted": closed(
        {
            "name": {"type": "string"},
            "deleted": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string"},
                "description": "The languages deleted.",
            },
            "status": {"const": "DELETED"},
        }
    ),
    "NewBroadcast": {
        "type": "object",
        "description": "Exactly one of `template` and `message`.",
        "properties": {
            "from": {
                "type": "string",
                "minLength": 1,
                "description": "One of your phone_number_ids.",
                "examples": [EXAMPLE_NUMBER],
            },
            "name": text(200),
            "template": {
                "type": "object",
                "description": "An APPROVED template of the number's WABA.",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "language": {
                        "oneOf": [
                            {
                                "type": "object",
                                "properties": {"code": {"type": "string", "minLength": 1}},
                                "required": ["code"],
                            },
                            {"type": "string", "minLength": 1},
                        ]
                    },
                },
                "required": ["name", "language"],
            },
            "message": {
                "type": "object",
                "description": (
                    'A free-form send shape without `from` and `to` (`{"type": "text", "text": '
                    "{...}}`): only recipients whose 24-hour window is open get it."
                ),
                "properties": {"type": {"enum": [t for t in SEND_TYPES if t != "template"]}},
                "required": ["type"],
            },
            "recipients": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_RECIPIENTS,
                "items": ref("BroadcastRecipient"),
            },
            "at": {
                "type": ["string", "null"],
                "description": (
                    "When to start: an ISO 8601 date-time; without an offset, the number's local "
                    "time. Absent or null: now."
                ),
                "examples": ["2027-03-01T09:00:00"],
            },
            "dry_run": {
                "type": "boolean",
                "default": False,
                "description": "Check and estimate only (200); nothing is stored or sent.",
            },
        },
        "required": ["from", "name", "recipients"],
        "additionalProperties": False,
        "oneOf": [{"required": ["template"]}, {"required": ["message"]}],
    },
    "BroadcastRecipient": {
        "type": "object",
        "description": "One that cannot be sent to is skipped (with its line), not refused.",
        "properties": {
            "to": {
                "type": "string",
                "pattern": PHONE,
                "description": "A phone number with its country code (`+34 600 12 34 56`).",
            },
            "variables": {
                "description": "The template's body parameters: in order, or by name.",
                "oneOf": [
                    {
                        "type": "array",
                        "items": {"type": ["string", "number"], "maxLength": MAX_VARIABLE_LENGTH},
                    },
                    {
                        "type": "object",
                        "additionalProperties": {
                            "type": ["string", "number"],
                            "maxLength": MAX_VARIABLE_LENGTH,
                        },
                    },
                    {"type": "null"},
                ],
            },
        },
        "required": ["to"],
    },
    "NewBroadcastForm": {
        "type": "object",
        "description": "NewBroadcast as a form: the recipients as a CSV file.",
        "properties": {
            "recipients": {
                "type": "string",
                "format": "binary",
                "description": (
                    "UTF-8 CSV, comma, semicolon or tab separated: `phone,var1,var2...`, or a "
                    "header row (`phone,first_name,...`) naming the variables."
                ),
            },
            "from": {"type": "string", "description": "One of your phone_number_ids."},
            "name": {"type": "string", "description": "1 to 200 characters."},
            "template": {
                "type": "string",
                "description": 'JSON text: {"name", "language": {"code"}}.',
            },
            "message": {"type": "string", "description": "JSON text: a send shape."},
            "at": {"type": "string", "description": "As in the JSON body."},
            "dry_run": {
                "type": "string",
                "description": "true, 1, yes or on: a dry run; anything else is not.",
            },
        },
        "required": ["recipients", "from", "name"],
        "additionalProperties": False,
    },
    "BroadcastCounts": closed(
        {
            key: {"type": "integer", "minimum": 0}
            for key in ("total", "queued", "sent", "delivered", "read", "failed", "skipped")
        }
    ),
    "SkippedRecipient": closed(
        {
            "to": {"type": "string", "description": "E.164 digits, or the line's text."},
            "line": {
                "type": "integer",
                "minimum": 1,
                "description": "The recipients' list item or CSV line, from 1.",
            },
            "reason": {
                "type": "string",
                "examples": [
                    "invalid_number",
                    "duplicate",
                    "invalid_variables",
                    "wrong_column_count",
                    "variables_mismatch: ...",
                    "opted_out",
                    "window_closed",
                ],
            },
        },
        optional=("line",),
    ),
    "CostEstimate": closed(
        {
            "messages": {"type": "integer", "minimum": 0},
            "currency": {"type": "string", "examples": ["USD"]},
            "amount": {
                "type": "number",
                "minimum": 0,
                "description": "Every recipient counted as delivered: an upper bound.",
            },
        }
    ),
    "Broadcast": closed(
        {
            "id": UUID,
            "name": {"type": "string"},
            "from": {"type": "string", "description": "The phone_number_id."},
            "status": {"enum": BROADCAST_STATUSES},
            "paused_reason": {"type": ["string", "null"]},
            "held_reason": {
                "type": ["string", "null"],
                "description": "Why a running campaign waits (the messaging limit): not a pause.",
            },
            "at": TIMESTAMP,
            "category": {"enum": BROADCAST_CATEGORIES},
            "template": {
                "anyOf": [
                    closed(
                        {
                            "name": {"type": "string"},
                            "language": closed({"code": {"type": "string"}}),
                        }
                    ),
                    {"type": "null"},
                ]
            },
            "message": {"type": ["object", "null"]},
            "counts": ref("BroadcastCounts"),
            "failed_by_code": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 1},
                "description": "Failed sends by Meta's error code.",
            },
            "skipped_by_reason": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 1},
            },
            "estimate": ref("CostEstimate"),
            "cost": closed(
                {
                    "billable": {"type": "integer", "minimum": 0},
                    "currency": {"type": "string"},
                    "amount": {
                        "type": "number",
                        "minimum": 0,
                        "description": "What Meta's pricing says it bills so far.",
                    },
                }
            ),
            "created_at": TIMESTAMP,
            "finished_at": nullable(TIMESTAMP),
            "skipped": {
                "type": "array",
                "items": ref("SkippedRecipient"),
                "maxItems": SHOWN_SKIPPED,
                "description": "On creation only: the first skipped lines (all in recipients.csv).",
            },
        },
        # A list shows each campaign's summary; one campaign (and a change to it) in full.
        optional=("skipped", "failed_by_code", "skipped_by_reason", "cost"),
    ),
    "BroadcastDryRun": closed(
        {
            "id": {"type": "null"},
            "dry_run": {"const": True},
            "name": {"type": "string"},
            "from": {"type": "string"},
            "status": {"enum": ["scheduled", "running"]},
            "at": TIMESTAMP,
            "category": {"enum": BROADCAST_CATEGORIES},
            "counts": ref("BroadcastCounts"),
            "skipped": {
                "type": "array",
                "items": ref("SkippedRecipient"),
                "maxItems": SHOWN_SKIPPED,
            },
            "estimate": ref("CostEstimate"),
        }
    ),
    "BroadcastPage": page_of("Broadcast"),
    "OptOut": closed(
        {
            "to": {"type": "string", "description": "The contact's wa_id."},
            "source": {
                "enum": OPT_OUT_SOURCES,
                "description": (
                    "keyword: they wrote a stop word; user_preferences: they stopped marketing "
                    "messages in WhatsApp; api: POST /v1/opt-outs; meta_131050: Meta refused a "
                    "marketing message for it."
                ),
            },
            "detail": {"type": ["string", "null"]},
            "created_at": TIMESTAMP,
        }
    ),
    "OptOutPage": page_of("OptOut"),
    "NewOptOut": closed(
        {
            "phone_number_id": digits("One of your numbers."),
            "to": {
                "type": "string",
                "pattern": PHONE,
                "description": "A phone number with its country code.",
            },
        }
    ),
    "OptOutAdded": closed({"phone_number_id": {"type": "string"}, "to": {"type": "string"}}),
    "OptOutRemoved": closed(
        {
            "phone_number_id": {"type": "string"},
            "to": {"type": "string"},
            "removed": {"const": True},
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

SECURITY_SCHEMES: Final[dict[str, Schema]] = {
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
}
