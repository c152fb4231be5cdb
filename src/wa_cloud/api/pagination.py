"""Cursor pagination shared by every list endpoint: `{"data": [...], "next": cursor|null}`."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from starlette.requests import Request

from wa_cloud.errors import BadRequest

BIGINT_MAX = 2**63 - 1  # the largest row id PostgreSQL's bigint holds


def whole_number(raw: str, maximum: int) -> int | None:
    """`raw` as a whole number from 1 to `maximum` in ASCII digits, or None. The length is
    checked first: int() of thousands of digits raises."""
    if not (0 < len(raw) <= 20 and raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if 1 <= value <= maximum else None


def limit_of(request: Request, default: int = 50, maximum: int = 200) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    limit = whole_number(raw, maximum)
    if limit is None:
        raise BadRequest(f"'limit' must be a whole number from 1 to {maximum}.", "invalid_limit")
    return limit


def encode_cursor(*values: Any) -> str:
    text = json.dumps(values, default=str, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(
    request: Request, *kinds: Callable[[Any], Any], name: str = "cursor"
) -> list[Any] | None:
    """The cursor's values (query parameter `name`), each passed through its kind (e.g.
    `cursor_time`, `UUID`); any cursor this API did not give out is a 400, never a database
    error."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong arity")
        return [kind(value) for kind, value in zip(kinds, values, strict=True)]
    except (ValueError, TypeError, AttributeError, OverflowError):
        raise BadRequest(f"'{name}' is not one this API gave out.", "invalid_cursor") from None


def cursor_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError("cursor time must be a string")
    return datetime.fromisoformat(value)


def cursor_uuid(value: Any) -> UUID:
    return UUID(str(value))


def cursor_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= BIGINT_MAX:
        raise ValueError("cursor id out of range")
    return value


def page(items: Sequence[dict[str, Any]], limit: int, *cursor_of: str) -> dict[str, Any]:
    """`items` was fetched with limit + 1 rows: the extra one says whether there is more."""
    more = len(items) > limit
    shown = list(items[:limit])
    next_cursor = encode_cursor(*(shown[-1][k] for k in cursor_of)) if more and shown else None
    return {"data": shown, "next": next_cursor}
