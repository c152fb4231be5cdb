"""One exception tree for the whole service.

`WaCloudError` is the root. `ApiError` carries what an HTTP client should see (status, machine
code, human message); the app turns it into the JSON error body in one place. Plain programmer
errors stay `TypeError`/`ValueError`.
"""

from __future__ import annotations

from typing import Any


class WaCloudError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(WaCloudError):
    """The environment does not describe a runnable service."""


class DatabaseUnavailable(WaCloudError):
    """PostgreSQL cannot be reached or refused the work; callers answer 503."""


class ApiError(WaCloudError):
    """An error with an HTTP status and a machine code, shown to the client as JSON."""

    def __init__(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra  # more machine-readable detail, e.g. Meta's own error


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"The body is larger than {limit} bytes.")


class RateLimited(ApiError):
    """429 with `Retry-After`: the caller's key is over its request rate."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            429, "rate_limited", "Too many requests with this API key; retry after a pause."
        )
        self.retry_after = retry_after


class BadRequest(ApiError):
    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(400, code, message)


class Unauthorized(ApiError):
    def __init__(self, message: str = "Missing or invalid credentials.") -> None:
        super().__init__(401, "unauthorized", message)


class Forbidden(ApiError):
    def __init__(self, message: str, code: str = "forbidden") -> None:
        super().__init__(403, code, message)


class NotFound(ApiError):
    def __init__(self, message: str = "Not found.", code: str = "not_found") -> None:
        super().__init__(404, code, message)


class Conflict(ApiError):
    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(409, code, message)


class Unprocessable(ApiError):
    def __init__(self, message: str, code: str = "validation_error") -> None:
        super().__init__(422, code, message)
