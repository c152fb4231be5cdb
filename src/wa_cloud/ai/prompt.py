"""What the model is given: a number's instructions filled in, and the recent conversation.

Instructions are a tenant's template with `{{placeholders}}` for facts the model cannot know
(the local time, the customer's name). History is cut to what fits the model's budget, newest
kept, in the user/assistant alternation chat models expect.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from itertools import groupby
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# `%A` follows the process locale; the model reads English whatever the server's settings.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_UNNAMED_CONTACT = "the customer"
# The zone file the host happens to have: valid to ZoneInfo, but not a place a tenant is in.
_HOST_ZONES = frozenset({"localtime"})


def valid_timezone(name: str) -> bool:
    """Whether `name` is an IANA time zone such as "America/Bogota"."""
    if name in _HOST_ZONES:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def render_instructions(
    template: str,
    *,
    now: datetime,
    timezone: str,
    contact_name: str | None,
    business_name: str | None,
    contact_fields: str = "",
) -> str:
    """The template with {{now}}, {{today}}, {{contact_name}}, {{business_name}} and
    {{contact_fields}} (what is known of the contact, already rendered as data by
    ai/memory.py) filled in.

    Spaces inside the braces are allowed; any other placeholder is left as written. Values are
    inserted once, so a contact named "{{now}}" stays that text. An unknown zone renders UTC.
    """
    zone_name = timezone if valid_timezone(timezone) else "UTC"
    zone: tzinfo = ZoneInfo(zone_name) if zone_name != "UTC" else UTC
    # A naive datetime is taken as UTC, the way the database hands times to us.
    local = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(zone)
    values = {
        "now": f"{local:%Y-%m-%d %H:%M} ({zone_name})",
        "today": f"{_WEEKDAYS[local.weekday()]} {local:%Y-%m-%d}",
        "contact_name": _one_line(contact_name) or _UNNAMED_CONTACT,
        "business_name": _one_line(business_name),
        "contact_fields": contact_fields,
    }
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _one_line(name: str | None) -> str:
    # A profile name is the contact's own text: keep it from forging lines of instructions.
    return " ".join(name.split()) if name else ""


@dataclass(frozen=True, slots=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str


def estimate_tokens(text: str) -> int:
    """About four characters a token, the usual estimate for English and Spanish text."""
    return max(1, math.ceil(len(text) / 4))


def trim_history(turns: Sequence[Turn], *, max_turns: int, token_budget: int) -> list[Turn]:
    """The newest turns that fit, oldest first, alternating and starting with the user.

    Consecutive turns of one role are merged first. Of those, the newest `max_turns` are kept,
    then the oldest dropped until the estimated tokens fit `token_budget`; the newest turn is
    kept whole even when it alone is over. Assistant turns left at the start are dropped, so
    a history whose only turn is the assistant's is empty.
    """
    if max_turns < 1:
        raise ValueError("max_turns must be at least 1")
    kept = _merge_roles(turns)[-max_turns:]
    tokens = sum(estimate_tokens(turn.text) for turn in kept)
    start = 0
    while tokens > token_budget and start < len(kept) - 1:
        tokens -= estimate_tokens(kept[start].text)
        start += 1
    while start < len(kept) and kept[start].role == "assistant":
        start += 1
    return kept[start:]


def _merge_roles(turns: Sequence[Turn]) -> list[Turn]:
    return [
        Turn(role, "\n".join(turn.text for turn in run))
        for role, run in groupby(turns, key=lambda turn: turn.role)
    ]
