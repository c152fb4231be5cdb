"""Tenant API keys: 256 random bits, shown once, stored as SHA-256.

A plain hash is right for keys with this much entropy (no dictionary to guess from), and it
lets the lookup be one indexed equality instead of a scan with a slow KDF.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "wak_"


def new_key() -> tuple[str, bytes, str]:
    """Return (the key to show once, its hash to store, a short prefix to recognise it by)."""
    key = PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key), key[:10]


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
