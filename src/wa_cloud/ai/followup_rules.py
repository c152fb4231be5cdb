"""A number's follow-up rules (`"follow_ups"` in the bot configuration).

A rule: when the customer has not answered `after_minutes` after our last message, write again,
at most `max` times in a row, only `between` two local times of the number's time zone. The
text is the rule's own (`text`) or written by the model from the conversation (`text` null);
outside the 24-hour window only the rule's `template` may go, or nothing. ai/followups.py
schedules and sends them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any, Final

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
                or not all(isinstance(t, str) and _CLOCK.match(t) for t in between)
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
