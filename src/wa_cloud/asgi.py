"""HTTP at the ASGI level: the ASGI types, the capped body reader, the JSON error body and the
typed request-field readers."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Literal, overload

from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable
from wa_cloud.jsonsafe import MAX_DEPTH, has_unstorable, text_depth_within

MAX_API_BODY = 1024 * 1024

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_response(
    status: int, code: str, message: str, extra: Mapping[str, Any] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **(extra or {})}}, status_code=status
    )


async def read_capped(
    receive: Receive,
    declared: bytes | str | None,
    limit: int,
) -> bytes:
    """An ASGI body, refusing (413) anything over `limit` without buffering more than that:
    a declared Content-Length over it is refused before a byte is read."""
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(limit)
        except ValueError:
            raise BadRequest("Content-Length is not a number.") from None
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
        more = bool(message.get("more_body"))
    return b"".join(chunks)


async def read_limited(request: Request, limit: int) -> bytes:
    return await read_capped(request.receive, request.headers.get("content-length"), limit)


async def read_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The JSON object of the body; with `optional`, an empty body is `{}`."""
    raw = await read_limited(request, MAX_API_BODY)
    if optional and not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("The body is not valid JSON.", "invalid_json") from None
    if not isinstance(document, dict):
        raise Unprocessable("The body must be a JSON object.")
    if not text_depth_within(raw, document):
        raise BadRequest(f"The body nests deeper than {MAX_DEPTH} levels.", "invalid_json")
    if has_unstorable(document):
        # PostgreSQL text and jsonb cannot hold U+0000 or a lone surrogate: refuse them here,
        # for every route.
        raise Unprocessable(
            "Strings must not contain NUL characters or lone surrogates.", "invalid_field"
        )
    return document


# A required field's reader returns str: the caller needs no check (a missing field is a 422).
@overload
def field_str(
    document: Mapping[str, Any],
    name: str,
    *,
    required: Literal[True] = True,
    max_length: int = 500,
) -> str: ...
@overload
def field_str(
    document: Mapping[str, Any],
    name: str,
    *,
    required: bool,
    max_length: int = 500,
    default: str | None = None,
) -> str | None: ...
def field_str(
    document: Mapping[str, Any],
    name: str,
    *,
    required: bool = True,
    max_length: int = 500,
    default: str | None = None,
) -> str | None:
    value = document.get(name)
    if value is None:
        if required:
            raise Unprocessable(f"'{name}' is required.", "missing_field")
        return default
    if not isinstance(value, str) or not value.strip():
        raise Unprocessable(f"'{name}' must be a non-empty string.", "invalid_field")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise Unprocessable(f"'{name}' must not contain NUL characters.", "invalid_field")
    if len(value) > max_length:
        raise Unprocessable(f"'{name}' is longer than {max_length} characters.", "invalid_field")
    return value.strip()


def field_bool(document: Mapping[str, Any], name: str) -> bool | None:
    value = document.get(name)
    if value is not None and not isinstance(value, bool):
        raise Unprocessable(f"'{name}' must be true or false.", "invalid_field")
    return value


def field_int(document: Mapping[str, Any], name: str, *, low: int, high: int) -> int | None:
    value = document.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Unprocessable(
            f"'{name}' must be a whole number from {low} to {high}.", "invalid_field"
        )
    return value


def field_number(
    document: Mapping[str, Any], name: str, *, low: float, high: float, above: bool = False
) -> float | None:
    """A number (int or float) within [low, high], or (`above`) within (low, high]."""
    value = document.get(name)
    if value is None:
        return None
    # Compared as given: a 400-digit int never becomes a float, and NaN or infinity fail.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (low < value if above else low <= value)
        or not value <= high
    ):
        rule = f"above {low:g} and at most {high:g}" if above else f"from {low:g} to {high:g}"
        raise Unprocessable(f"'{name}' must be a number {rule}.", "invalid_field")
    return float(value)


def reject_unknown(document: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise Unprocessable(f"Unknown field(s): {', '.join(unknown)}.", "unknown_field")


DIGITS = re.compile(r"[0-9]{5,20}")


PIN = re.compile(r"[0-9]{6}")


@overload
def field_digits(body: dict[str, Any], name: str, *, required: Literal[True] = True) -> str: ...
@overload
def field_digits(body: dict[str, Any], name: str, *, required: bool) -> str | None: ...
def field_digits(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
        body[name] = value
    text = field_str(body, name, required=required, max_length=20)
    if text is not None and not DIGITS.fullmatch(text):
        raise Unprocessable(f"'{name}' must be digits only.", "invalid_field")
    return text


def field_pin(body: dict[str, Any]) -> str | None:
    """The optional two-step verification PIN: six ASCII digits."""
    pin = field_str(body, "pin", required=False, max_length=6)
    if pin is not None and not PIN.fullmatch(pin):
        raise Unprocessable("'pin' must be six digits.", "invalid_field")
    return pin


def parse_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such resource.") from None
