"""Meta's Graph error: the JSON body, the HTTP status, and the codes the sandbox raises.

Every refusal the sandbox makes is a `GraphError`, rendered in one place as
`{"error": {"message", "type", "code", "error_subcode"?, "error_data", "fbtrace_id"}}`.
Messages follow Meta's `(#code) title` habit; clients must branch on `code`, never on text.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.responses import JSONResponse

# Codes whose refusal is a throttle: Meta answers these with 429 (the rest of the Graph API
# answers 400 for a bad request, 401 for a bad token, 403 for a permission).
THROTTLE_CODES = frozenset({4, 80007, 130429, 131056})

# Titles and details Meta uses for the codes a fault may name; an unknown code gets a generic
# title. Kept to what the sandbox emits or what tests inject.
TITLES: dict[int, tuple[str, str]] = {
    0: ("AuthException", "We were unable to authenticate the app user."),
    1: ("API Unknown", "Invalid request or possible server error."),
    2: ("API Service", "Temporary due to downtime or due to being overloaded."),
    4: ("API Too Many Calls", "The app has reached its API call rate limit."),
    10: ("Application does not have permission for this action", "Permission is missing."),
    100: ("Invalid parameter", "Invalid parameter."),
    190: ("Invalid OAuth access token", "The access token is invalid or has expired."),
    368: ("Temporarily blocked for policies violations", "The account is blocked."),
    80007: ("Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    130429: ("Rate limit hit", "Cloud API message throughput has been reached."),
    131000: ("Something went wrong", "Message failed to send because of an unknown error."),
    131005: ("Access denied", "Permission is either not granted or has been removed."),
    131008: ("Required parameter is missing", "A required parameter is missing."),
    131009: ("Parameter value is not valid", "A parameter value is not valid."),
    131016: ("Service unavailable", "A service is temporarily unavailable."),
    131021: ("Recipient cannot be sender", "Sender and recipient phone number is the same."),
    131026: ("Message Undeliverable", "Unable to deliver message."),
    131031: ("Account has been locked", "The business account is restricted or disabled."),
    131047: (
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer "
        "last replied to this number.",
    ),
    131048: ("Spam rate limit hit", "Message failed to send because of spam restrictions."),
    131049: (
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "Meta chose not to deliver this message.",
    ),
    131051: ("Unsupported message type", "Unsupported message type."),
    131053: ("Media upload error", "Unable to upload the media used in the message."),
    131056: (
        "(Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone "
        "number to the same phone number in a short period of time.",
    ),
    131057: ("Account in maintenance mode", "Business account is in maintenance mode."),
    132000: (
        "Number of parameters does not match the expected number of params",
        "The number of variable parameter values does not match the template.",
    ),
    132001: ("Template name does not exist in the translation", "The template does not exist."),
    132012: (
        "Parameter format does not match format in the created template",
        "A parameter's format does not match the template.",
    ),
    132015: ("Template is Paused", "Template is paused due to low quality."),
    132016: ("Template is Disabled", "Template has been permanently disabled."),
    133005: ("Two step verification PIN Mismatch", "The two-step verification PIN is wrong."),
    133010: ("Phone number Not Registered", "The phone number is not registered."),
}


def default_status(code: int) -> int:
    if code in THROTTLE_CODES:
        return 429
    if code in (0, 190):
        return 401
    if code in (3, 10, 131005):
        return 403
    if code in (1, 2, 131000, 131016):
        return 500 if code != 131016 else 503
    return 400


class GraphError(Exception):
    """A refusal as Meta would answer it. `details` goes to `error_data.details`."""

    def __init__(
        self,
        code: int,
        details: str | None = None,
        *,
        message: str | None = None,
        subcode: int | None = None,
        status: int | None = None,
    ) -> None:
        title, default_details = TITLES.get(code, ("Sandbox fault", "Injected by the sandbox."))
        self.code = code
        self.message = message or f"(#{code}) {title}"
        self.title = title
        self.details = details or default_details
        self.subcode = subcode
        self.status = status or default_status(code)
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
        return {"error": error}

    def webhook_error(self) -> dict[str, Any]:
        """The same error as it appears in a `failed` status's `errors[]`."""
        return {
            "code": self.code,
            "title": self.title,
            "message": self.title,
            "error_data": {"details": self.details},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }

    def response(self) -> JSONResponse:
        headers = {}
        if self.status == 401:
            # Graph's 401s carry an OAuth challenge; clients may key on it.
            headers["www-authenticate"] = (
                f'OAuth "Facebook Platform" "invalid_token" "{self.message}"'
            )
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def invalid_token(
    details: str = "Invalid OAuth access token - Cannot parse access token",
) -> GraphError:
    return GraphError(190, details, message=details)


def no_permission(object_id: str) -> GraphError:
    return GraphError(
        10,
        f"The access token does not have permission for object {object_id}.",
        message="(#10) Application does not have permission for this action",
    )


def no_such_object(object_id: str, method: str) -> GraphError:
    verb = {"GET": "get", "DELETE": "delete"}.get(method, "post")
    text = (
        f"Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation."
    )
    return GraphError(100, text, message=text, subcode=33)


def missing(param: str) -> GraphError:
    """A required parameter inside the message object (Meta: 131008)."""
    return GraphError(131008, f"The parameter {param} is required.")


def invalid(details: str) -> GraphError:
    """A value Meta rejects: counts, lengths of interactive parts, bad links (131009)."""
    return GraphError(131009, details)


def bad_param(details: str) -> GraphError:
    """A top-level or length error Graph reports as a plain `(#100)`."""
    return GraphError(100, details, message=f"(#100) {details}")
