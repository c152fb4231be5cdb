"""`paths` of the campaigns tag: a business's message templates (Meta's, read fresh and changed
through the number's token), its broadcasts (campaigns) and the contacts who opted out of them,
each with one of its API keys."""

from __future__ import annotations

from functools import partial
from typing import Final

from wa_cloud.api.openapi.components import EXAMPLE_NUMBER
from wa_cloud.api.openapi.schema import (
    DIGITS,
    PAGING,
    UUID,
    Schema,
    errors,
    json_body,
    ok,
    operation,
    ref,
    with_body,
)

# Every operation here: the campaigns tag, a tenant's API key.
_operation: Final = partial(operation, tag="campaigns", security="tenant")
_with_body: Final = partial(with_body, tag="campaigns", security="tenant")


def _number_query(description: str) -> Schema:
    return {
        "name": "phone_number_id",
        "in": "query",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": DIGITS, "examples": [EXAMPLE_NUMBER]},
    }


_BROADCAST_ID: Final[Schema] = {
    "name": "broadcast_id",
    "in": "path",
    "required": True,
    "schema": UUID,
}
_ACTION: Final[Schema] = {
    "name": "action",
    "in": "path",
    "required": True,
    "description": (
        "pause (a scheduled or running campaign), resume (a paused one) or cancel (one not "
        "finished); any other move from the campaign's status is a 409 "
        "`invalid_campaign_state`."
    ),
    "schema": {"enum": ["pause", "resume", "cancel"]},
}
_TEMPLATE_NAME: Final[Schema] = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The template's name.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 512},
}
_OPTED_OUT: Final[Schema] = {
    "name": "to",
    "in": "path",
    "required": True,
    "description": "The contact's phone number with its country code.",
    "schema": {"type": "string", "minLength": 1},
}
_TEMPLATES_NUMBER: Final = _number_query("One of your Cloud API numbers: its WABA's templates.")
_OPT_OUTS_NUMBER: Final = _number_query("The number the contacts opted out of.")


def paths() -> dict[str, Schema]:
    return {**_templates(), **_broadcasts(), **_opt_outs()}


def _templates() -> dict[str, Schema]:
    return {
        "/v1/templates": {
            "get": _operation(
                "listTemplates",
                "The templates of a number's WABA, as Meta lists them now",
                description=(
                    "A web-session number has none: 422 `templates_unsupported`. Meta not "
                    "answering is a 503 `meta_unavailable`; Meta refusing, 422 `meta_refused`."
                ),
                parameters=[_TEMPLATES_NUMBER],
                responses={
                    "200": ok("The WABA's templates (no further pages).", ref("TemplateList")),
                    **errors(400, 404, 422),
                },
            ),
        },
        "/v1/templates/{name}": {
            "parameters": [_TEMPLATE_NAME, _TEMPLATES_NUMBER],
            "put": _with_body(
                "putTemplate",
                "Create a template on the number's WABA, or edit it, from its file",
                description=(
                    "The body is checked against Meta's rules first: 422 `template_invalid` "
                    "with every violation. A change Meta does not allow is a 409: "
                    "`template_needs_new_name` (an approved template's category, the "
                    "parameter format) or `template_in_review`. Meta refusing it is a 422 "
                    "`meta_refused`."
                ),
                body=json_body(ref("TemplateFile")),
                responses={
                    "201": ok("Created; Meta reviews it.", ref("TemplateChanged")),
                    "200": ok(
                        "Edited (Meta reviews it again), or unchanged.", ref("TemplateChanged")
                    ),
                },
                also=(404, 409),
            ),
            "delete": _operation(
                "deleteTemplate",
                "Delete a template from the number's WABA: every language, or one",
                parameters=[
                    {
                        "name": "language",
                        "in": "query",
                        "required": False,
                        "description": "Only this language; absent: all of them.",
                        "schema": {"type": "string"},
                    }
                ],
                responses={
                    "200": ok("Deleted at Meta.", ref("TemplateDeleted")),
                    **errors(400, 404, 422),
                },
            ),
        },
    }


def _broadcasts() -> dict[str, Schema]:
    return {
        "/v1/broadcasts": {
            "post": _with_body(
                "createBroadcast",
                "Start or schedule a campaign: one template (or message) to many recipients",
                description=(
                    "JSON, or a multipart form with the recipients as a CSV file and the other "
                    "fields as form fields (`template` and `message` as JSON text). Everything "
                    "is checked before anything is stored: the number is yours (404), the "
                    "template exists and is APPROVED (422 `template_not_found`, "
                    "`template_not_approved`); a recipient that cannot be sent to (invalid, "
                    "duplicate, opted out, variables that do not fit, a closed window for a "
                    "message) is skipped, not refused. `dry_run` answers the same without "
                    "storing anything (200)."
                ),
                body={
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref("NewBroadcast")},
                        "multipart/form-data": {"schema": ref("NewBroadcastForm")},
                    },
                },
                responses={
                    "201": ok("Stored: scheduled, or running now.", ref("Broadcast")),
                    "200": ok("A dry run: what it would be.", ref("BroadcastDryRun")),
                },
                also=(403, 404),
            ),
            "get": _operation(
                "listBroadcasts",
                "Your campaigns, newest first",
                parameters=PAGING,
                responses={
                    "200": ok("A page of campaigns.", ref("BroadcastPage")),
                    **errors(400),
                },
            ),
        },
        "/v1/broadcasts/{broadcast_id}": {
            "parameters": [_BROADCAST_ID],
            "get": _operation(
                "getBroadcast",
                "A campaign and its progress",
                responses={"200": ok("The campaign.", ref("Broadcast")), **errors(404)},
            ),
        },
        "/v1/broadcasts/{broadcast_id}/recipients.csv": {
            "parameters": [_BROADCAST_ID],
            "get": _operation(
                "broadcastRecipients",
                "What became of each recipient, as CSV",
                responses={
                    "200": {
                        **ok(
                            "`to,status,wamid,error_code,reason`, a row per line of the list "
                            "(a skipped line says why), as an attachment.",
                            {"type": "string"},
                            media_type="text/csv",
                        ),
                        "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                    },
                    **errors(404),
                },
            ),
        },
        "/v1/broadcasts/{broadcast_id}/{action}": {
            "parameters": [_BROADCAST_ID, _ACTION],
            "post": _operation(
                "changeBroadcast",
                "Pause, resume or cancel a campaign",
                description=(
                    "Pause and cancel act at once: what is queued and not yet handed to Meta "
                    "goes back (pause) or is skipped (cancel)."
                ),
                responses={
                    "200": ok("The campaign as changed.", ref("Broadcast")),
                    **errors(403, 404, 409),
                },
            ),
        },
    }


def _opt_outs() -> dict[str, Schema]:
    return {
        "/v1/opt-outs": {
            "get": _operation(
                "listOptOuts",
                "Contacts who opted out of a number's marketing campaigns",
                parameters=[_OPT_OUTS_NUMBER, *PAGING],
                responses={
                    "200": ok("A page of opt-outs, by number.", ref("OptOutPage")),
                    **errors(400, 404),
                },
            ),
            "post": _with_body(
                "addOptOut",
                "Opt a contact out of a number's marketing campaigns",
                body=json_body(ref("NewOptOut")),
                responses={
                    "201": ok("Opted out.", ref("OptOutAdded")),
                    "200": ok("It had already opted out.", ref("OptOutAdded")),
                },
                also=(404,),
            ),
        },
        "/v1/opt-outs/{to}": {
            "parameters": [_OPTED_OUT, _OPT_OUTS_NUMBER],
            "delete": _operation(
                "removeOptOut",
                "Let a number's campaigns reach a contact again",
                responses={
                    "200": ok("Removed.", ref("OptOutRemoved")),
                    **errors(400, 404, 422),
                },
            ),
        },
    }
