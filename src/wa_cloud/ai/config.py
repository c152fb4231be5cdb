"""A number's assistant configuration: the defaults, the PUT body's rules, the stored row.

`PUT /v1/numbers/{id}/bot` replaces the whole configuration (omitted fields take their
defaults); `enabled` is the number's `bot_enabled` (one switch); `api_key` is write-only and
sealed; `base_url` goes through the URL guard when it is used. The reply pipeline reads the
same `BotConfig` from the row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, Literal

import httpx

from wa_cloud.ai.prompt import valid_timezone
from wa_cloud.errors import Unprocessable
from wa_cloud.urlguard import checked_url

DEFAULT_INSTRUCTIONS: Final = (
    "You are the WhatsApp assistant of {{business_name}}. Answer briefly and kindly, in the "
    "customer's language. Today is {{today}}."
)
# Reasoning models answer through the Responses API (with an effort); the rest through Chat
# Completions. Overridable per bot with "api".
REASONING_MODEL: Final = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)
REASONING_EFFORTS: Final = ("minimal", "low", "medium", "high")
PHONE: Final = re.compile(r"[0-9]{6,20}")

Api = Literal["chat", "responses"]


@dataclass(frozen=True, slots=True)
class BotConfig:
    enabled: bool = False
    instructions: str = DEFAULT_INSTRUCTIONS
    model: str | None = None
    base_url: str | None = None
    # Sealed in the row; only a fresh PUT carries it in the clear, never a response.
    api_key: str | None = field(default=None, repr=False)
    api: Api | None = None
    reasoning_effort: str | None = None
    temperature: float = 0.7
    max_output_tokens: int = 400
    history_turns: int = 20
    debounce_seconds: float = 1.5
    timezone: str = "UTC"
    owner_phones: tuple[str, ...] = ()
    credits_per_reply: int = 2
    retention_hours: int = 24
    fallback_text: str | None = None
    out_of_credits_text: str | None = None
    media_unavailable_text: str | None = None
    voice_replies: bool = False
    human_takeover_minutes: float = 30.0
    tools: tuple[Mapping[str, Any], ...] = ()
    has_api_key: bool = False  # a key is stored (GET says so, without it)

    def api_for(self, model: str) -> Api:
        if self.api is not None:
            return self.api
        return "responses" if REASONING_MODEL.match(model) else "chat"


# The columns of `bots` that hold the configuration, in the order of the upsert's parameters.
COLUMNS: Final = (
    "instructions",
    "model",
    "base_url",
    "api",
    "reasoning_effort",
    "temperature",
    "max_output_tokens",
    "history_turns",
    "debounce_seconds",
    "timezone",
    "owner_phones",
    "credits_per_reply",
    "retention_hours",
    "fallback_text",
    "out_of_credits_text",
    "media_unavailable_text",
    "voice_replies",
    "human_takeover_minutes",
    "tools",
)
FIELDS: Final = frozenset({"enabled", "api_key", *COLUMNS})


def bot_json(config: BotConfig) -> dict[str, Any]:
    """The configuration as GET shows it: `api_key` never, `has_api_key` instead."""
    shown = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "api_key"}
    shown["owner_phones"] = list(config.owner_phones)
    shown["tools"] = [dict(t) for t in config.tools]
    return shown


def from_row(row: Mapping[str, Any] | None, *, enabled: bool) -> BotConfig:
    """The stored configuration (None: the defaults) with the number's switch."""
    if row is None:
        return BotConfig(enabled=enabled)
    values = {name: row[name] for name in COLUMNS}
    values["owner_phones"] = tuple(values["owner_phones"])
    values["tools"] = tuple(values["tools"] or ())
    return BotConfig(enabled=enabled, has_api_key=row["api_key_enc"] is not None, **values)


def row_values(config: BotConfig) -> list[Any]:
    """The configuration columns' values, in COLUMNS order."""
    values = [getattr(config, name) for name in COLUMNS]
    values[COLUMNS.index("owner_phones")] = list(config.owner_phones)
    values[COLUMNS.index("tools")] = [dict(t) for t in config.tools]
    return values


def _bad(name: str, rule: str) -> Unprocessable:
    return Unprocessable(f"'{name}' must be {rule}.", "invalid_field")


def _text(body: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise _bad(name, "a non-empty string without NUL characters, or null")
    if len(value) > limit:
        raise _bad(name, f"at most {limit} characters")
    return value.strip()


def _number(body: Mapping[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(name, f"a number from {low} to {high}")
    # Compared before isfinite: a 400-digit integer overflows a float.
    if not low <= value <= high or not math.isfinite(value):
        raise _bad(name, f"a number from {low} to {high}")
    return float(value)


def _whole(body: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(name, f"a whole number from {low} to {high}")
    return value


def _flag(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(name, "true or false")
    return value


def _phones(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) > 20:
        raise _bad("owner_phones", "a list of at most 20 phone numbers")
    phones: list[str] = []
    for item in value:
        digits = re.sub(r"[\s()+\-.]", "", item) if isinstance(item, str) else ""
        if not PHONE.fullmatch(digits):
            raise _bad("owner_phones", "phone numbers in international form (digits, like wa_id)")
        phones.append(digits)
    return tuple(dict.fromkeys(phones))


def _base_url(value: str | None) -> str | None:
    """Checked for shape here; the address it resolves to is checked at every connection."""
    if value is None:
        return None
    try:
        url = checked_url(value)
    except Exception:
        raise _bad("base_url", "an http(s) URL of an OpenAI-compatible API") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise _bad("base_url", "an http(s) URL of an OpenAI-compatible API")
    return str(httpx.URL(value)).rstrip("/")


def parse_config(body: Mapping[str, Any], *, current: BotConfig) -> BotConfig:
    """A PUT body as a whole configuration. `api_key` omitted keeps the stored key only when
    the endpoint (`base_url`) stays the same: a key is never sent to a new address unasked."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise Unprocessable(f"Unknown field(s): {', '.join(unknown)}.", "unknown_field")
    timezone = _text(body, "timezone", 64) or "UTC"
    if not valid_timezone(timezone):
        raise _bad("timezone", "an IANA time zone such as 'America/Bogota'")
    api = body.get("api")
    if api is not None and api not in ("chat", "responses"):
        raise _bad("api", "'chat', 'responses' or null")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise _bad("reasoning_effort", "one of " + ", ".join(REASONING_EFFORTS) + " or null")
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or tools):
        # The agent's HTTP tools are their own change; until then only an empty list is valid.
        raise _bad("tools", "an empty list (HTTP tools are not available yet)")
    base_url = _base_url(_text(body, "base_url", 2000))
    api_key = _text(body, "api_key", 500)
    if api_key is not None and not (api_key.isascii() and api_key.isprintable()):
        raise _bad("api_key", "an API key (printable ASCII)")
    keeps_key = api_key is None and "api_key" not in body and base_url == current.base_url
    config = BotConfig(
        enabled=_flag(body, "enabled", True),
        instructions=_text(body, "instructions", 20_000) or DEFAULT_INSTRUCTIONS,
        model=_text(body, "model", 200),
        base_url=base_url,
        api_key=api_key,
        api=api,
        reasoning_effort=effort,
        temperature=_number(body, "temperature", 0.0, 2.0, 0.7),
        max_output_tokens=_whole(body, "max_output_tokens", 16, 32_000, 400),
        history_turns=_whole(body, "history_turns", 0, 200, 20),
        debounce_seconds=_number(body, "debounce_seconds", 0.0, 60.0, 1.5),
        timezone=timezone,
        owner_phones=_phones(body.get("owner_phones")),
        credits_per_reply=_whole(body, "credits_per_reply", 0, 1_000_000, 2),
        retention_hours=_whole(body, "retention_hours", 0, 24 * 365 * 10, 24),
        fallback_text=_text(body, "fallback_text", 4096),
        out_of_credits_text=_text(body, "out_of_credits_text", 4096),
        media_unavailable_text=_text(body, "media_unavailable_text", 4096),
        voice_replies=_flag(body, "voice_replies", False),
        human_takeover_minutes=_number(body, "human_takeover_minutes", 0.0, 60.0 * 24 * 30, 30.0),
        tools=(),
    )
    # A local server may take no key at all; a stored key is dropped when the URL changes.
    return replace(config, has_api_key=api_key is not None or (keeps_key and current.has_api_key))
