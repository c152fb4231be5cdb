"""Meta's Graph API errors: one table from code to exception class, split by what to do next.

`TransientGraphError` means try again later (with backoff); `PermanentGraphError` means the same
request will fail again. Unknown codes are permanent unless Meta says `is_transient` or the HTTP
status is 5xx. Branch on `code`, never on text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wa_cloud.errors import WaCloudError


class GraphError(WaCloudError):
    """An error answered by (or on the way to) the Graph API."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        title: str | None = None,
        details: str | None = None,
        http_status: int | None = None,
        fbtrace_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.title = title
        self.details = details
        self.http_status = http_status
        self.fbtrace_id = fbtrace_id
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, Any]:
        """The `{"code", "title", "message"}` shape the API shows tenants."""
        return {
            "code": self.code,
            "title": self.title or type(self).__name__,
            "message": self.details or self.message,
        }


class TransientGraphError(GraphError):
    retryable = True


class PermanentGraphError(GraphError):
    retryable = False


# Transient ---------------------------------------------------------------------------------
class GraphUnavailable(TransientGraphError):
    """Network failure, timeout before sending, 5xx, or a non-JSON answer from a proxy."""


class ServiceTemporarilyUnavailable(TransientGraphError):
    """131000, 131016, 131057, 1, 2: Meta-side trouble or maintenance."""


class ApiRateLimited(TransientGraphError):
    """4, 80007: the app or WABA is over its API call rate."""


class ThroughputExceeded(TransientGraphError):
    """130429: the number sends faster than its throughput."""


class PairRateLimited(TransientGraphError):
    """131056: too many messages to the same user too fast; back off hard."""


class SendOutcomeUnknown(TransientGraphError):
    """The request went out and no answer came back: Meta may have accepted it.

    Never retried blindly: the message is marked `unknown` for a person or a status webhook to
    settle."""

    retryable = False


# Permanent ---------------------------------------------------------------------------------
class AuthenticationFailed(PermanentGraphError):
    """0, 190: the access token is invalid or expired."""


class PermissionDenied(PermanentGraphError):
    """3, 10, 131005: the token lacks the permission or capability."""


class InvalidParameter(PermanentGraphError):
    """100, 131008, 131009: a parameter is missing or wrong."""


class RecipientIsSender(PermanentGraphError):
    """131021."""


class Undeliverable(PermanentGraphError):
    """131026: the user cannot receive this message."""


class SpamLimited(PermanentGraphError):
    """131048, 131049: Meta chose not to deliver; do not retry now."""


class AccountProblem(PermanentGraphError):
    """131031, 131042, 131045, 368, 133010: locked, billing, certificate, blocked, unregistered."""


class OutsideWindow(PermanentGraphError):
    """131047: more than 24 hours since the user last wrote; send a template."""


class MarketingOptOut(PermanentGraphError):
    """131050: the user stopped marketing messages."""


class UnsupportedMedia(PermanentGraphError):
    """131051, 131053: unsupported message type or media upload error."""


class TemplateError(PermanentGraphError):
    """132xxx: template missing, unapproved, paused, disabled, or parameters wrong."""


ERROR_CODES: Mapping[int, type[GraphError]] = {
    0: AuthenticationFailed,
    190: AuthenticationFailed,
    3: PermissionDenied,
    10: PermissionDenied,
    131005: PermissionDenied,
    4: ApiRateLimited,
    80007: ApiRateLimited,
    130429: ThroughputExceeded,
    131000: ServiceTemporarilyUnavailable,
    131016: ServiceTemporarilyUnavailable,
    131057: ServiceTemporarilyUnavailable,
    1: ServiceTemporarilyUnavailable,
    2: ServiceTemporarilyUnavailable,
    131056: PairRateLimited,
    131048: SpamLimited,
    131049: SpamLimited,
    131008: InvalidParameter,
    131009: InvalidParameter,
    100: InvalidParameter,
    131021: RecipientIsSender,
    131026: Undeliverable,
    131031: AccountProblem,
    131042: AccountProblem,
    131045: AccountProblem,
    368: AccountProblem,
    133010: AccountProblem,
    131047: OutsideWindow,
    131050: MarketingOptOut,
    131051: UnsupportedMedia,
    131053: UnsupportedMedia,
    132000: TemplateError,
    132001: TemplateError,
    132005: TemplateError,
    132007: TemplateError,
    132012: TemplateError,
    132015: TemplateError,
    132016: TemplateError,
    132018: TemplateError,
}


def error_from_response(
    http_status: int, document: Any, retry_after: float | None = None
) -> GraphError:
    """Meta's error JSON (or whatever came back instead) as the right exception."""
    error = document.get("error") if isinstance(document, Mapping) else None
    if not isinstance(error, Mapping):
        message = f"Graph API answered HTTP {http_status} without an error object"
        if http_status >= 500 or http_status == 429:
            return GraphUnavailable(message, http_status=http_status, retry_after=retry_after)
        return PermanentGraphError(message, http_status=http_status)
    code = error.get("code")
    code = code if isinstance(code, int) else None
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    subcode = error.get("error_subcode")
    kwargs: dict[str, Any] = {
        "code": code,
        "subcode": subcode if isinstance(subcode, int) else None,
        "title": error.get("error_user_title") or error.get("type"),
        "details": details if isinstance(details, str) else None,
        "http_status": http_status,
        "fbtrace_id": error.get("fbtrace_id"),
        "retry_after": retry_after,
    }
    message = str(error.get("message") or f"Graph API error {code}")
    cls = ERROR_CODES.get(code) if code is not None else None
    if cls is None:
        if error.get("is_transient") is True or http_status >= 500:
            cls = ServiceTemporarilyUnavailable
        elif 132000 <= (code or 0) < 133000:
            cls = TemplateError
        else:
            cls = PermanentGraphError
    return cls(message, **kwargs)


def error_from_status_errors(errors: list[Mapping[str, Any]]) -> GraphError | None:
    """The first error of an asynchronous `statuses[].errors` list, as an exception."""
    for error in errors:
        code = error.get("code")
        if isinstance(code, int):
            data = error.get("error_data")
            details = data.get("details") if isinstance(data, Mapping) else None
            cls = ERROR_CODES.get(code, PermanentGraphError)
            return cls(
                str(error.get("message") or error.get("title") or code),
                code=code,
                title=error.get("title"),
                details=details,
            )
    return None
