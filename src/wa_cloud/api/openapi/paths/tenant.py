"""`paths` of the tenant tag: what a business does with one of its API keys (numbers and their
assistants, apps, messages, media, contacts, usage, its webhook, its audit log)."""

from __future__ import annotations

from functools import partial
from typing import Final

from wa_cloud.ai.memory import MAX_TAG_LENGTH
from wa_cloud.api.openapi.components import DELIVERY_STATES
from wa_cloud.api.openapi.schema import (
    PAGING,
    UUID,
    Schema,
    errors,
    json_body,
    ok,
    operation,
    param,
    ref,
    with_body,
)

# Every operation here: the tenant tag, a tenant's API key.
_operation: Final = partial(operation, tag="tenant", security="tenant")
_with_body: Final = partial(with_body, tag="tenant", security="tenant")
_CONTACT: Final[Schema] = {
    "name": "contact",
    "in": "path",
    "required": True,
    "description": "The contact's wa_id or user_id.",
    "schema": {"type": "string", "minLength": 1},
}
_TAG_FILTER: Final[Schema] = {
    "name": "tag",
    "in": "query",
    "required": False,
    "description": "Only contacts with this tag (repeat for several: all of them).",
    "schema": {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG_LENGTH},
    },
    "style": "form",
    "explode": True,
}


def paths() -> dict[str, Schema]:
    return {
        "/v1/numbers": {
            "post": _with_body(
                "createNumber",
                "Register a number",
                description=(
                    "A Cloud API number (proven with Meta), or with `provider` websession a "
                    "number linked through a WhatsApp-Web gateway: its instance is created at "
                    "once and its QR code appears at GET /v1/numbers/{phone_number_id}/qr."
                ),
                body=json_body({"oneOf": [ref("NewNumber"), ref("NewWebSessionNumber")]}),
                responses={"201": ok("Registered (never the token or PIN).", ref("Number"))},
                also=(403, 409),
            ),
            "get": _operation(
                "listNumbers",
                "Your numbers",
                responses={"200": ok("All your numbers.", ref("NumberList")), **errors()},
            ),
        },
        "/v1/numbers/{phone_number_id}": {
            "parameters": [param("PhoneNumberId")],
            "get": _operation(
                "getNumber",
                "Read one of your numbers",
                responses={"200": ok("The number.", ref("Number")), **errors(404)},
            ),
            "patch": _with_body(
                "updateNumber",
                "Turn the bot on or off; set the send rate",
                body=json_body(ref("NumberChange")),
                responses={"200": ok("The number as changed.", ref("Number"))},
                also=(403, 404),
            ),
            "delete": _operation(
                "deleteNumber",
                "Deregister the number at Meta and forget its token and PIN (history stays)",
                responses={"200": ok("Removed.", ref("NumberRemoved")), **errors(403, 404)},
            ),
        },
        "/v1/numbers/{phone_number_id}/bot": {
            "parameters": [param("PhoneNumberId")],
            "get": _operation(
                "getBot",
                "The number's AI assistant (never its model key)",
                description="A number never configured shows the defaults.",
                responses={"200": ok("The configuration.", ref("Bot")), **errors(404)},
            ),
            "put": _with_body(
                "putBot",
                "Configure the number's AI assistant (the whole configuration)",
                description=(
                    "Omitted fields take their defaults; `enabled` is the number's bot_enabled. "
                    "`model`, `base_url` and `api_key` null mean the platform's. A value the "
                    "schema cannot judge (a time zone, a URL) is 422 `invalid_field`; an "
                    "unknown field 422 `unknown_field`."
                ),
                body=json_body(ref("BotSettings")),
                responses={"200": ok("The configuration as stored.", ref("Bot"))},
                also=(403, 404),
            ),
        },
        "/v1/numbers/{phone_number_id}/tool-calls": {
            "parameters": [param("PhoneNumberId")],
            "get": _operation(
                "listToolCalls",
                "What the assistant's HTTP tools were asked, newest first",
                parameters=[*PAGING],
                responses={
                    "200": ok("A page of tool calls.", ref("ToolCallPage")),
                    **errors(400, 404),
                },
            ),
        },
        "/v1/numbers/{phone_number_id}/files": {
            "parameters": [param("PhoneNumberId")],
            "post": _with_body(
                "addFile",
                "Add a file to the number's library, for the assistant's send_file tool",
                description=(
                    "A multipart form with the file, or JSON naming a URL we download it from "
                    "(a host that is not a public address is 422 `url_not_allowed`). Checked "
                    "against Meta's media rules now, uploaded to Meta when first sent. A title "
                    "the number has already (whatever its case) is 409 `title_taken`; more "
                    "files or bytes than a number holds 422 `library_full`."
                ),
                body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": ref("LibraryFileUpload")},
                        "application/json": {"schema": ref("LibraryFileFromUrl")},
                    },
                },
                responses={"201": ok("Added.", ref("LibraryFile"))},
                also=(403, 404, 409),
            ),
            "get": _operation(
                "listFiles",
                "The number's files (without their bytes), oldest first",
                responses={"200": ok("All the files.", ref("LibraryFileList")), **errors(404)},
            ),
        },
        "/v1/numbers/{phone_number_id}/files/{file_id}": {
            "parameters": [
                param("PhoneNumberId"),
                {"name": "file_id", "in": "path", "required": True, "schema": UUID},
            ],
            "delete": _operation(
                "deleteFile",
                "Remove a file from the number's library",
                responses={"204": {"description": "Removed."}, **errors(403, 404)},
            ),
        },
        "/v1/numbers/{phone_number_id}/qr": {
            "parameters": [param("PhoneNumberId")],
            "get": _operation(
                "getNumberQr",
                "A web-session number's state and the QR code to link it",
                description="422 `not_a_web_session` for a Cloud API number.",
                responses={"200": ok("The session.", ref("WebSessionQr")), **errors(404, 422)},
            ),
        },
        "/v1/onboarding/embedded-signup": {
            "post": _with_body(
                "embeddedSignup",
                "Register a number from Meta's Embedded Signup",
                description=(
                    "Exchanges the code for a business token with the platform app, then "
                    "onboards the number exactly as POST /v1/numbers does."
                ),
                body=json_body(ref("EmbeddedSignup")),
                responses={"201": ok("Registered (never the token or PIN).", ref("Number"))},
                also=(403, 409),
            ),
        },
        "/v1/apps": {
            "post": _with_body(
                "createApp",
                "Register your own Meta app",
                description=(
                    "Ownership is proven first: Graph `GET /{app_id}` with the app access token "
                    "`app_id|app_secret` must answer with that id (422 `app_not_verified`)."
                ),
                body=json_body(ref("NewApp")),
                responses={"201": ok("Registered; point Meta at callback_url.", ref("App"))},
                also=(403, 409),
            ),
            "get": _operation(
                "listApps",
                "Your own Meta apps",
                responses={"200": ok("All your apps.", ref("AppList")), **errors()},
            ),
        },
        "/v1/apps/{app_id}": {
            "parameters": [param("AppId")],
            "put": _with_body(
                "updateApp",
                "A new app secret (proven with Meta again) or verify token",
                body=json_body(ref("AppSecrets")),
                responses={"200": ok("Updated.", ref("App"))},
                also=(403, 404),
            ),
            "delete": _operation(
                "deleteApp",
                "Forget one of your apps (409 while numbers are bound to it)",
                responses={
                    "200": ok("Deleted.", ref("AppDeleted")),
                    **errors(403, 404, 409),
                },
            ),
        },
        "/v1/messages": {
            "post": _with_body(
                "sendMessage",
                "Send a message through the durable outbox",
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
                },
                also=(403, 404),
            ),
        },
        "/v1/messages/{message_id}": {
            "parameters": [param("MessageId")],
            "get": _operation(
                "getMessage",
                "A message and where it is",
                responses={"200": ok("The message.", ref("Message")), **errors(404)},
            ),
        },
        "/v1/media": {
            "post": _with_body(
                "uploadMedia",
                "Upload media to Meta for a number, checked against Meta's rules first",
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
                responses={"201": ok("Uploaded.", ref("MediaUploaded"))},
                also=(403, 404),
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
            "get": _operation(
                "getMedia",
                "The bytes of an inbound media file we downloaded from Meta",
                responses={
                    "200": ok(
                        "The file, as an attachment, in its own MIME type.",
                        {"type": "string", "format": "binary"},
                        media_type="*/*",
                    ),
                    "409": ok("Not downloaded yet, or the download failed.", ref("Error")),
                    **errors(404),
                },
            ),
        },
        "/v1/contacts": {
            "get": _operation(
                "listContacts",
                "Contacts of one of your numbers, with their 24-hour window",
                description=(
                    "Newest first. `tag` (repeatable) keeps contacts with every tag given; "
                    "`field.<name>=<value>` (e.g. `field.city=Bogota`, one per field) keeps "
                    "contacts whose field has exactly that value."
                ),
                parameters=[param("PhoneNumberIdQuery"), _TAG_FILTER, *PAGING],
                responses={
                    "200": ok("A page of contacts.", ref("ContactPage")),
                    **errors(400, 404),
                },
            ),
        },
        "/v1/contacts/{contact}": {
            "parameters": [_CONTACT, param("PhoneNumberIdQuery")],
            "get": _operation(
                "getContact",
                "One contact: its tags, notes, fields and message counts",
                responses={
                    "200": ok("The contact.", ref("ContactDetail")),
                    **errors(400, 404),
                },
            ),
            "patch": _with_body(
                "updateContact",
                "Set a contact's tags or notes, or merge its fields",
                description=(
                    "`tags` replaces the list, `notes` the notes; `fields` is merged (a null "
                    "value removes that field). Values set here are marked `by: api`; the "
                    "assistant may update them later from a newer message of the customer."
                ),
                body=json_body(ref("ContactUpdate")),
                responses={"200": ok("The contact, updated.", ref("ContactDetail"))},
                also=(403, 404),
            ),
        },
        "/v1/contacts/{contact}/messages": {
            "get": _operation(
                "contactMessages",
                "A contact's messages in both directions, newest first",
                parameters=[
                    _CONTACT,
                    param("PhoneNumberIdQuery"),
                    *PAGING,
                ],
                responses={
                    "200": ok("A page of messages.", ref("ContactMessagePage")),
                    **errors(400, 404),
                },
            ),
        },
        "/v1/contacts/{contact}/pause": {
            "parameters": [_CONTACT],
            "post": _with_body(
                "pauseContact",
                "Pause the assistant in one conversation, for a while or until resumed",
                body=json_body(ref("PauseRequest")),
                responses={"200": ok("The contact, paused.", ref("Contact"))},
                also=(403, 404),
            ),
        },
        "/v1/contacts/{contact}/resume": {
            "parameters": [_CONTACT],
            "post": _with_body(
                "resumeContact",
                "Let the assistant answer one conversation again (whoever paused it)",
                body=json_body(ref("ResumeRequest")),
                responses={"200": ok("The contact, resumed.", ref("Contact"))},
                also=(403, 404),
            ),
        },
        "/v1/contacts/{contact}/follow-ups": {
            "get": _operation(
                "listFollowUps",
                "The assistant's follow-ups and your reminders for a contact, newest first",
                parameters=[_CONTACT, param("PhoneNumberIdQuery"), *PAGING],
                responses={
                    "200": ok("A page of follow-ups and reminders.", ref("FollowUpPage")),
                    **errors(400, 404),
                },
            ),
        },
        "/v1/contacts/{contact}/follow-ups/{follow_up_id}": {
            "delete": _operation(
                "cancelFollowUp",
                "Call off a follow-up or reminder that is still scheduled",
                parameters=[
                    _CONTACT,
                    {
                        "name": "follow_up_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    },
                    param("PhoneNumberIdQuery"),
                ],
                responses={
                    "200": ok("Cancelled.", ref("FollowUp")),
                    **errors(400, 403, 404, 409),
                },
            ),
        },
        "/v1/contacts/{contact}/reminders": {
            "parameters": [_CONTACT],
            "post": _with_body(
                "createReminder",
                "Write to a contact at a fixed time (a text inside the window, or a template)",
                description=(
                    "Exactly one of `text` or `template`. A text goes only while the contact's "
                    "24-hour window is open at that time (else the reminder is skipped); a "
                    "template (approved on the number's WABA) goes at any time. Reminders go "
                    "out whether or not the assistant is on or the conversation paused."
                ),
                body=json_body(ref("NewReminder")),
                responses={"201": ok("Scheduled.", ref("FollowUp"))},
                also=(403, 404, 409),
            ),
        },
        "/v1/usage": {
            "get": _operation(
                "getUsage",
                "Your credits, their ledger and the model tokens your assistants used",
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Ledger rows, newest first.",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 100,
                        },
                    },
                    *(
                        {
                            "name": name,
                            "in": "query",
                            "required": False,
                            "description": description,
                            "schema": {"type": "string", "format": "date"},
                        }
                        for name, description in (
                            ("since", "Only this UTC day and later (ledger and tokens)."),
                            ("until", "Only this UTC day and earlier (ledger and tokens)."),
                        )
                    ),
                ],
                responses={"200": ok("Your usage.", ref("Usage")), **errors(400)},
            ),
        },
        "/v1/webhooks": {
            "put": _with_body(
                "putWebhook",
                "Set your webhook: where we POST the events you choose",
                description=(
                    "Replaces the URL and events; every PUT makes a new secret. A URL whose "
                    "host is not a public address, or that carries credentials, is 422 "
                    "`url_not_allowed` (checked again at every delivery)."
                ),
                body=json_body(ref("WebhookSetting")),
                responses={"200": ok("Set; the secret is shown this once.", ref("WebhookSet"))},
                also=(403,),
            ),
            "get": _operation(
                "getWebhook",
                "Your webhook (never its secret)",
                responses={"200": ok("The webhook.", ref("Webhook")), **errors(404)},
            ),
            "delete": _operation(
                "deleteWebhook",
                "Stop forwarding events; pending deliveries are dropped",
                responses={"204": {"description": "Deleted."}, **errors(403, 404)},
            ),
        },
        "/v1/webhooks/deliveries": {
            "get": _operation(
                "listWebhookDeliveries",
                "Events forwarded to your webhook, newest first",
                parameters=[
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": DELIVERY_STATES},
                    },
                    *PAGING,
                ],
                responses={
                    "200": ok("A page of deliveries.", ref("DeliveryPage")),
                    **errors(400),
                },
            ),
        },
        "/v1/events": {
            "get": _operation(
                "listEvents",
                "Your rows of the audit log, newest first",
                parameters=PAGING,
                responses={"200": ok("A page of events.", ref("AuditPage")), **errors(400)},
            ),
        },
    }
