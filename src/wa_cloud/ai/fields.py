"""The contact fields a number's assistant extracts (`"extract_fields"` in the bot
configuration): each a name and a description the model reads.

After a reply, the model's structured output fills them from the conversation (ai/memory.py);
they are stored on the contact with the message they came from and shown to the model as
`{{contact_fields}}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from wa_cloud.errors import Unprocessable

MAX_FIELDS: Final = 20
FIELD_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True, slots=True)
class ExtractField:
    name: str
    description: str = ""

    def shown(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description}

    @classmethod
    def stored(cls, value: Mapping[str, Any]) -> ExtractField:
        return cls(str(value["name"]), str(value.get("description") or ""))


def valid_field_name(name: Any) -> bool:
    """snake_case, at most 40 characters (`fullmatch`: `$` alone also matches before a final
    newline, and a name is written into the model's instructions)."""
    return isinstance(name, str) and FIELD_NAME.fullmatch(name) is not None


def _bad(rule: str) -> Unprocessable:
    return Unprocessable(f"'extract_fields' {rule}.", "invalid_field")


def parse_extract_fields(value: Any) -> tuple[ExtractField, ...]:
    """A PUT's `extract_fields`: at most MAX_FIELDS, names in snake_case, each once."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_FIELDS:
        raise _bad(f"must be a list of at most {MAX_FIELDS} fields")
    parsed: list[ExtractField] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or set(item) - {"name", "description"}:
            raise _bad(f"[{index}] must be an object with 'name' and 'description'")
        name = item.get("name")
        if not isinstance(name, str) or not valid_field_name(name):
            raise _bad(f"[{index}] needs a 'name' in snake_case (at most 40 characters)")
        if any(f.name == name for f in parsed):
            raise _bad(f"repeats the name '{name}'")
        description = item.get("description") or ""
        if not isinstance(description, str) or len(description) > 500:
            raise _bad(f"[{index}] 'description' must be text of at most 500 characters")
        parsed.append(ExtractField(name, description))
    return tuple(parsed)
