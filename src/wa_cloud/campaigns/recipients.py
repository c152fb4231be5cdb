"""A campaign's recipient list, from JSON or a CSV file: numbers normalised to E.164 digits,
variables per recipient, and every line that cannot be sent named with its reason.

A CSV is `phone,var1,var2,...` without a header, or with a header row whose first column is the
phone (`phone`, `to`, `number`, `wa_id`...) and whose other columns name the variables (named
parameters). Lines are counted as a spreadsheet shows them: the first line is 1.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

MAX_RECIPIENTS: Final = 100_000
MAX_VARIABLE_LENGTH: Final = 1024  # a body parameter longer than Meta's whole body is a mistake
_SEPARATORS = re.compile(r"[\s().\-/]")
_E164_DIGITS = re.compile(r"[1-9][0-9]{6,14}")  # E.164: at most 15 digits, no leading 0
_PHONE_HEADERS: Final = frozenset(
    {"phone", "to", "number", "wa_id", "telefono", "teléfono", "msisdn"}
)

Variables = list[str] | dict[str, str] | None


@dataclass(frozen=True, slots=True)
class Recipient:
    to: str  # E.164 digits, without the +
    line: int
    variables: Variables


@dataclass(frozen=True, slots=True)
class Skipped:
    to: str
    reason: str
    line: int | None = None

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"to": self.to}
        if self.line is not None:
            shown["line"] = self.line
        shown["reason"] = self.reason
        return shown


@dataclass(slots=True)
class RecipientList:
    recipients: list[Recipient] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def add(self, raw: str, line: int, variables: Variables) -> None:
        to = normalise_phone(raw)
        if to is None:
            self.skipped.append(Skipped(raw[:40], "invalid_number", line))
        elif to in self._seen:
            self.skipped.append(Skipped(to, "duplicate", line))
        else:
            self._seen.add(to)
            self.recipients.append(Recipient(to, line, variables))


class RecipientsInvalid(ValueError):
    """The list as a whole cannot be read (not the fault of one line)."""


def normalise_phone(raw: str) -> str | None:
    """E.164 digits of a phone as people write it (`+34 600-12 34 56`, `0034600123456`), or
    None. Without a country code a number cannot be told apart from another country's, so a
    national number with a trunk 0 is refused rather than guessed."""
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    return text if _E164_DIGITS.fullmatch(text) else None


def _variable_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value)
    return text if len(text) <= MAX_VARIABLE_LENGTH else None


def _json_variables(value: Any) -> Variables | str:
    """The variables of one JSON recipient, or the reason they cannot be used."""
    if value is None:
        return None
    if isinstance(value, list):
        texts = [_variable_text(v) for v in value]
        if any(t is None for t in texts):
            return "invalid_variables"
        return [t for t in texts if t is not None]
    if isinstance(value, Mapping):
        named: dict[str, str] = {}
        for key, item in value.items():
            text = _variable_text(item)
            if text is None or not isinstance(key, str):
                return "invalid_variables"
            named[key] = text
        return named
    return "invalid_variables"


def from_json(items: Any) -> RecipientList:
    """`[{"to": "...", "variables": [...] | {...}}]`; line = the item's position from 1."""
    if not isinstance(items, list) or not items:
        raise RecipientsInvalid('\'recipients\' must be a non-empty list of {"to", "variables"}.')
    if len(items) > MAX_RECIPIENTS:
        raise RecipientsInvalid(f"A campaign has at most {MAX_RECIPIENTS} recipients.")
    result = RecipientList()
    for line, item in enumerate(items, start=1):
        to = item.get("to") if isinstance(item, Mapping) else None
        if not isinstance(to, str):
            result.skipped.append(Skipped(str(to)[:40], "invalid_number", line))
            continue
        variables = _json_variables(item.get("variables"))
        if isinstance(variables, str):
            result.skipped.append(Skipped(to[:40], variables, line))
            continue
        result.add(to, line, variables)
    return result


def from_csv(data: bytes) -> RecipientList:
    """A CSV upload (UTF-8, a BOM allowed; comma or semicolon separated). Reading 100,000 lines
    is CPU work: call it through `asyncio.to_thread`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RecipientsInvalid("The recipients CSV must be UTF-8 text.") from None
    if "\x00" in text:
        # The csv module reads NUL like any other character (since Python 3.11); PostgreSQL
        # text cannot store it.
        raise RecipientsInvalid("The recipients CSV cannot hold NUL characters.")
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:4096], delimiters=",;\t"
        )
    except csv.Error:
        dialect = csv.excel
    header: list[str] | None = None
    seen_a_row = False
    result = RecipientList()
    try:
        for line, row in enumerate(csv.reader(io.StringIO(text), dialect), start=1):
            # Blank lines count too: 8 MB of them cost as much to read as recipients do.
            if line - (header is not None) > MAX_RECIPIENTS:
                raise RecipientsInvalid(f"A campaign has at most {MAX_RECIPIENTS} recipients.")
            if not any(cell.strip() for cell in row):
                continue  # blank lines are not recipients
            if not seen_a_row:
                seen_a_row = True
                if row[0].strip().lower() in _PHONE_HEADERS:
                    header = [c.strip() for c in row[1:]]
                    continue
            values = [cell.strip() for cell in row[1:]]
            if any(len(v) > MAX_VARIABLE_LENGTH for v in values):
                result.skipped.append(Skipped(row[0].strip()[:40], "invalid_variables", line))
                continue
            variables: Variables
            if header is None:
                variables = values or None
            else:
                if len(values) != len(header):
                    result.skipped.append(Skipped(row[0].strip()[:40], "wrong_column_count", line))
                    continue
                variables = dict(zip(header, values, strict=True)) or None
            result.add(row[0], line, variables)
    except csv.Error as exc:  # a field past the csv module's size limit
        raise RecipientsInvalid(f"The recipients CSV cannot be read: {exc}.") from None
    if not result.recipients and not result.skipped:
        raise RecipientsInvalid("The recipients CSV has no rows.")
    return result


def template_components(variables: Variables) -> list[dict[str, Any]]:
    """The body parameters of a template send: in order for a list, by name for a mapping."""
    if not variables:
        return []
    if isinstance(variables, Mapping):
        params = [
            {"type": "text", "parameter_name": name, "text": value}
            for name, value in variables.items()
        ]
    else:
        params = [{"type": "text", "text": value} for value in variables]
    return [{"type": "body", "parameters": params}]
