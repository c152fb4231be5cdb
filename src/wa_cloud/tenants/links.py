"""Signed, expiring links to a tenant's status page: `{base_url}/t/{token}`; the same token
signs the business in to the console: `{base_url}/console/link/{token}`.

The token is the tenant id and the tenant's link generation, signed with itsdangerous
(HMAC-SHA256, a timestamp inside). Its key is derived from `WA_SECRET_KEY` with a salt of its
own, so a token signed for this purpose is worthless anywhere else the master key signs
something. Nothing is stored per link: a link is valid until it is older than its lifetime,
until the key that signed it is neither `WA_SECRET_KEY` nor one of `WA_PREVIOUS_SECRET_KEYS`,
or until a new invitation moves the tenant's `link_generation` past the one it carries (the
page checks that against the tenant row: revocation without a list of links).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from wa_cloud.config import Settings

SALT = "tenant-status-page"
CONSOLE_SALT = "console-link"
LIFETIME = timedelta(days=7)
# Longer than any token we sign (about 90 characters): anything bigger is junk, not worth a MAC.
MAX_TOKEN_LENGTH = 512

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class StatusLink:
    """What a valid token says: whose page, and under which generation it was issued."""

    tenant_id: UUID
    generation: int


class _ClockedSigner(TimestampSigner):
    """A TimestampSigner reading a clock it is given, so expiry is testable without sleeping."""

    def __init__(self, *args: Any, clock: Clock = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


def signed_serializer(
    settings: Settings, clock: Clock = time.time, salt: str = SALT
) -> URLSafeTimedSerializer:
    """Signs with `WA_SECRET_KEY` under `salt` (one per purpose: links, console sessions)."""
    if not settings.secret_key:
        raise ValueError("signed tokens need settings.secret_key")
    return URLSafeTimedSerializer(
        # Signs with the last key, opens with any: links mailed before `wa-cloud rotate-key`
        # keep opening while the old key is listed in WA_PREVIOUS_SECRET_KEYS.
        [*settings.previous_secret_keys, settings.secret_key],
        salt=salt,
        signer=_ClockedSigner,
        # HMAC key derivation and SHA-256 rather than itsdangerous's SHA-1 defaults.
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256, "clock": clock},
    )


def make_token(
    settings: Settings,
    tenant_id: UUID,
    *,
    generation: int = 0,
    clock: Clock = time.time,
    salt: str = SALT,
) -> str:
    return str(signed_serializer(settings, clock, salt).dumps([str(tenant_id), generation]))


def make_link(
    settings: Settings, tenant_id: UUID, *, generation: int = 0, clock: Clock = time.time
) -> str:
    token = make_token(settings, tenant_id, generation=generation, clock=clock)
    return f"{settings.base_url}/t/{token}"


def make_console_link(
    settings: Settings, tenant_id: UUID, *, generation: int = 0, clock: Clock = time.time
) -> str:
    """Signs the business in to the console (console/session.py opens it). Its own salt: a
    status-page link, which may be passed around as read-only, never opens the console."""
    token = make_token(settings, tenant_id, generation=generation, clock=clock, salt=CONSOLE_SALT)
    return f"{settings.base_url}/console/link/{token}"


def expires_at(issued_at: float, lifetime: timedelta = LIFETIME) -> datetime:
    """When a link signed at `issued_at` (a clock reading) stops opening."""
    return datetime.fromtimestamp(int(issued_at), UTC) + lifetime


def open_link(
    settings: Settings,
    token: str,
    max_age: timedelta = LIFETIME,
    *,
    clock: Clock = time.time,
    salt: str = SALT,
) -> StatusLink | None:
    """What `token` says, or None when it is expired, tampered with or not ours. Whether its
    generation is still the tenant's is for the caller to check against the tenant row."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        payload = signed_serializer(settings, clock, salt).loads(
            token, max_age=int(max_age.total_seconds())
        )
        if isinstance(payload, str):
            # Signed before links carried a generation: the first one.
            return StatusLink(UUID(payload), 0)
        tenant_id, generation = payload
        if type(generation) is not int or generation < 0:
            return None
        return StatusLink(UUID(tenant_id), generation)
    except (BadData, ValueError, TypeError, AttributeError):
        # BadData covers a bad signature, an expired timestamp and an undecodable payload;
        # the rest is a validly signed payload of another shape (never ours).
        return None
