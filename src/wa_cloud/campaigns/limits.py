"""Meta's limits on business-initiated messages, as its webhooks report them: the messaging
limit tier (unique recipients per rolling 24 hours) and the number's quality.

`phone_number_quality_update` names the number by its display number and carries `event`
(FLAGGED: quality dropped to low; UNFLAGGED; UPGRADE, DOWNGRADE of the tier) and
`current_limit`. A number flagged to low quality pauses its running campaigns at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from uuid import UUID

import asyncpg

from wa_cloud.db.queries import Q

TIERS: Final[Mapping[str, int | None]] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
DEFAULT_TIER: Final = "TIER_250"  # an unknown tier is the lowest a registered number has
QUALITY_BY_EVENT: Final[Mapping[str, str]] = {"FLAGGED": "RED", "UNFLAGGED": "GREEN"}


def limit_of(tier: str | None) -> int | None:
    """The tier's number of new recipients per 24 h; None: unlimited."""
    return TIERS.get((tier or DEFAULT_TIER).upper(), TIERS[DEFAULT_TIER])


async def apply_quality_update(
    conn: asyncpg.Connection, waba_id: str, tenant_id: UUID, value: Mapping[str, Any]
) -> None:
    display = "".join(c for c in str(value.get("display_phone_number", "")) if c.isdigit())
    limit = value.get("current_limit")
    tier = limit.upper() if isinstance(limit, str) and limit.upper() in TIERS else None
    quality = QUALITY_BY_EVENT.get(str(value.get("event", "")).upper())
    if not display or (tier is None and quality is None):
        return
    numbers = await conn.fetch(Q.update_number_quality, waba_id, tenant_id, display, tier, quality)
    if quality == "RED":
        for number in numbers:
            live = await conn.fetch(
                Q.number_broadcasts, number["phone_number_id"], tenant_id, False
            )
            await conn.execute(
                Q.stop_broadcasts,
                [r["id"] for r in live],
                "paused",
                "quality_rating_red: Meta flagged the number's quality as low",
                None,
            )
