"""The NOTIFY channels: declared here once. The SQL names them as `{{channel.<key>}}`, filled in
from this table when the queries load (db/queries.py); the worker listens on the same names."""

from __future__ import annotations

from typing import Final

DELIVERIES: Final = "wa_deliveries"  # a delivery stored (or requeued): the indexers
OUTBOX: Final = "wa_outbox"  # a message queued: the sender
MEDIA: Final = "wa_media"  # an inbound media download queued: the media fetcher
FORWARDS: Final = "wa_forwards"  # an event queued for a tenant's webhook: the forwarder
REPLIES: Final = "wa_replies"  # a conversation's reply scheduled: the assistant
SESSIONS: Final = "wa_sessions"  # a web session needs a gateway call now: the watchdog
CAMPAIGNS: Final = "wa_campaigns"  # a campaign created or resumed: the campaign runner
FOLLOW_UPS: Final = "wa_follow_ups"  # a follow-up or reminder scheduled: its sender
# A message, contact or number changed (triggers of migration 0017): open console pages.
CONSOLE: Final = "wa_console"

BY_KEY: Final[dict[str, str]] = {
    "deliveries": DELIVERIES,
    "outbox": OUTBOX,
    "media": MEDIA,
    "forwards": FORWARDS,
    "replies": REPLIES,
    "sessions": SESSIONS,
    "campaigns": CAMPAIGNS,
    "follow_ups": FOLLOW_UPS,
    "console": CONSOLE,
}
