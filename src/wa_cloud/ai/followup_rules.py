"""A number's follow-up rules (`"follow_ups"` in the bot configuration), and the rows they
schedule.

A rule: when the customer has not answered `after_minutes` after our last message, write again,
at most `max` times in a row, only `between` two local times of the number's time zone. The
text is the rule's own (`text`) or written by the model from the conversation (`text` null);
outside the 24-hour window only the rule's `template` may go, or nothing. ai/followups.py
sends them.

Scheduling, on the caller's connection and in its transaction:
- when the assistant's reply is queued (`schedule_follow_ups`), each rule's first attempt is a
  `follow_ups` row due `after_minutes` later, moved forward to the next opening of `between`
  (a start after the end spans midnight; local times through zoneinfo, so DST is the zone's).
  The conversation's waiting follow-ups give way to them: a newer message never piles up more;
- each rule is its own ladder: a follow-up that goes out schedules its rule's next attempt
  (up to `max`), counted from that follow-up; a skipped or failed one ends its ladder;
- any message from the customer cancels the conversation's follow-ups (`cancel_on_inbound`, in
  the indexer's transaction); reminders are not follow-ups and stay.
Only the assistant's messages start a ladder: a person writing through the API pauses the
assistant instead (human takeover), and a paused conversation gets no follow-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from wa_cloud.ai.prompt import valid_timezone
from wa_cloud.db.queries import Q
from wa_cloud.errors import Unprocessable
from wa_cloud.outbox.compose import template_request

MAX_RULES: Final = 5
MAX_TIMES: Final = 10
MAX_AFTER_MINUTES: Final = 60 * 24 * 30
_CLOCK: Final = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_FIELDS: Final = frozenset({"after_minutes", "max", "between", "text", "template"})


@dataclass(frozen=True, slots=True)
class FollowUpRule:
    after_minutes: float
    max: int = 1
    between: tuple[time, time] | None = None  # local times; start > end spans midnight
    text: str | None = None  # None: written by the model
    template: Mapping[str, Any] | None = None  # Meta's template send object

    def shown(self) -> dict[str, Any]:
        return {
            "after_minutes": self.after_minutes,
            "max": self.max,
            "between": None if self.between is None else [f"{t:%H:%M}" for t in self.between],
            "text": self.text,
            "template": None if self.template is None else dict(self.template),
        }

    @classmethod
    def stored(cls, value: Mapping[str, Any]) -> FollowUpRule:
        between = value.get("between")
        return cls(
            after_minutes=float(value["after_minutes"]),
            max=int(value.get("max") or 1),
            between=None if not between else (_clock(between[0]), _clock(between[1])),
            text=value.get("text"),
            template=value.get("template"),
        )


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _bad(index: int, rule: str) -> Unprocessable:
    return Unprocessable(f"'follow_ups[{index}]' {rule}.", "invalid_field")


def parse_follow_ups(value: Any) -> tuple[FollowUpRule, ...]:
    """A PUT's `follow_ups`, each rule checked; a template is checked as a send would be."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_RULES:
        raise Unprocessable(
            f"'follow_ups' must be a list of at most {MAX_RULES} rules.", "invalid_field"
        )
    rules: list[FollowUpRule] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _bad(index, "must be an object")
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            raise _bad(index, f"has unknown field(s): {', '.join(unknown)}")
        after = item.get("after_minutes")
        if (
            isinstance(after, bool)
            or not isinstance(after, int | float)
            or not 0 < after <= MAX_AFTER_MINUTES
        ):
            raise _bad(index, f"needs 'after_minutes' above 0 and at most {MAX_AFTER_MINUTES}")
        times = item.get("max", 1)
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= MAX_TIMES:
            raise _bad(index, f"'max' must be a whole number from 1 to {MAX_TIMES}")
        between = item.get("between")
        window: tuple[time, time] | None = None
        if between is not None:
            if (
                not isinstance(between, list)
                or len(between) != 2
                or not all(isinstance(t, str) and _CLOCK.fullmatch(t) for t in between)
                or between[0] == between[1]
            ):
                raise _bad(
                    index, "'between' must be two different local times like ['09:00', '20:00']"
                )
            window = (_clock(between[0]), _clock(between[1]))
        text = item.get("text")
        if text is not None and (not isinstance(text, str) or not text.strip() or len(text) > 4096):
            raise _bad(index, "'text' must be text of 1 to 4,096 characters, or null")
        template = item.get("template")
        if template is not None:
            if not isinstance(template, Mapping):
                raise _bad(index, "'template' must be Meta's template object, or null")
            try:
                template_request("1000000", template)
            except Unprocessable as exc:
                raise _bad(index, f"has a 'template' Meta would refuse: {exc.message}") from None
        rules.append(
            FollowUpRule(
                after_minutes=float(after),
                max=times,
                between=window,
                text=text,
                template=None if template is None else dict(template),
            )
        )
    return tuple(rules)


# Scheduling ---------------------------------------------------------------------------------
def zone_of(name: str) -> tzinfo:
    """The number's time zone (its bot's `timezone`); an unknown one is UTC, as in prompts."""
    return ZoneInfo(name) if name != "UTC" and valid_timezone(name) else UTC


def within(at: datetime, between: tuple[time, time] | None, zone: tzinfo) -> bool:
    """Whether `at` falls in the local hours `between` [start, end) (None: any time)."""
    if between is None:
        return True
    start, end = between
    local = at.astimezone(zone).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end  # spans midnight


def into_hours(at: datetime, between: tuple[time, time] | None, zone: tzinfo) -> datetime:
    """`at`, or the next opening of `between` after it when `at` falls outside those hours.

    The opening is the start's wall time on the right local day; a start that a DST change
    skips that day falls where the zone puts it (zoneinfo's fold 0: an hour later), a start
    that occurs twice is its first occurrence.
    """
    if within(at, between, zone):
        return at
    assert between is not None
    local = at.astimezone(zone)
    for days in range(3):  # today's opening, else tomorrow's (a third day for safety)
        day = local.date() + timedelta(days=days)
        opening = datetime.combine(day, between[0], tzinfo=zone)
        if opening.astimezone(UTC) > at:
            return opening.astimezone(UTC)
    raise AssertionError("a daily opening is always within two days")


def follow_up_due(after: datetime, rule: FollowUpRule, zone: tzinfo) -> datetime:
    """When `rule`'s follow-up of a message sent at `after` is due."""
    return into_hours(after + timedelta(minutes=rule.after_minutes), rule.between, zone)


def stored_rules(value: Any) -> tuple[FollowUpRule, ...]:
    return tuple(FollowUpRule.stored(r) for r in value or ())


async def schedule_follow_ups(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    phone_number_id: str,
    contact_id: int,
    *,
    now: datetime,
) -> int:
    """Our message to the conversation went out at `now`: each rule's first follow-up is
    scheduled, the waiting ones replaced. How many were scheduled (0: the number has no
    rules, and this cost one indexed read)."""
    row = await conn.fetchrow(Q.follow_up_rules, phone_number_id, tenant_id)
    rules = stored_rules(row["follow_ups"]) if row is not None else ()
    if not rules:
        return 0
    zone = zone_of(row["timezone"])
    await conn.execute(Q.replace_follow_ups, contact_id, tenant_id)
    await insert_follow_ups(
        conn,
        tenant_id,
        phone_number_id,
        contact_id,
        [(index, 1, rule.max, follow_up_due(now, rule, zone)) for index, rule in enumerate(rules)],
    )
    return len(rules)


async def insert_follow_ups(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    phone_number_id: str,
    contact_id: int,
    rows: Sequence[tuple[int, int, int, datetime]],
) -> None:
    """Rows of (rule index, attempt, max attempts, due at), and a wake for their sender."""
    await conn.execute(
        Q.insert_follow_ups,
        tenant_id,
        phone_number_id,
        contact_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )
    await conn.execute(Q.notify_follow_ups)


async def cancel_on_inbound(conn: asyncpg.Connection, contact_ids: Sequence[int]) -> None:
    """The customers of `contact_ids` wrote: their conversations' follow-ups are off."""
    if contact_ids:
        await conn.execute(Q.cancel_follow_ups_on_inbound, list(set(contact_ids)))
