"""JSON from outside, made safe to store: PostgreSQL text and jsonb hold neither U+0000 nor a
lone UTF-16 surrogate, and deep nesting costs recursion everywhere it is walked.

Both can only arrive as `\\u` escapes (strict JSON refuses raw control characters, and raw bytes
must be valid UTF-8), so a cheap scan of the raw bytes decides whether a document needs the walk.
"""

from __future__ import annotations

import re
from typing import Any, Final

# Meta's webhooks nest about 8 deep, our API's send shapes about 10.
MAX_DEPTH: Final = 32
REPLACEMENT: Final = "\ufffd"

_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class TooDeep(ValueError):
    """Nested deeper than `MAX_DEPTH`."""


def may_hold_unstorable(raw: bytes) -> bool:
    """Whether a JSON text may decode to a NUL or a surrogate (a pair is fine, but rare)."""
    return _SUSPECT_ESCAPE.search(raw) is not None


def depth_within(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether containers nest at most `limit` deep (iterative: safe on any input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in item)
    return True


def text_depth_within(raw: bytes, document: Any, limit: int = MAX_DEPTH) -> bool:
    """`depth_within` for a document decoded from `raw`: a text with at most `limit` opening
    brackets (a webhook with one message has about a dozen) cannot nest deeper, so counting
    them at C speed spares the walk; only longer texts are walked."""
    return raw.count(b"{") + raw.count(b"[") <= limit or depth_within(document, limit)


def has_unstorable(value: Any) -> bool:
    """Whether any string (key or value) holds a NUL or a lone surrogate."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(has_unstorable(k) or has_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_unstorable(v) for v in value)
    return False


def storable(value: Any) -> Any:
    """A copy with every NUL and lone surrogate replaced by U+FFFD (call `depth_within` first).

    json.loads joins an escaped surrogate pair into one character, so a surrogate left in a
    string is always a lone one."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value
