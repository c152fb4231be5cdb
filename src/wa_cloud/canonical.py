"""The one way each is written: a time in our JSON (ISO 8601, None stays null) and the canonical
JSON of a tuple of values, which dedup keys are made of (the same values, in any key order,
always give the same text)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def canonical_json(*parts: object) -> str:
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)


def digest(*parts: object) -> bytes:
    """SHA-256 of the parts' canonical JSON: a dedup key that fits a bytea column."""
    return hashlib.sha256(canonical_json(*parts).encode()).digest()
