"""A number's assistant configuration: the defaults, the PUT body's rules, the stored row.

`PUT /v1/numbers/{id}/bot` replaces the whole configuration (omitted fields take their
defaults); `enabled` is the number's `bot_enabled` (one switch); `api_key` is write-only and
sealed; `base_url` goes through the URL guard when it is used. The reply pipeline reads the
same `BotConfig` from the row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, Literal

import httpx

from wa_cloud.ai.commands import phone_digits
from wa_cloud.ai.fields import ExtractField, parse_extract_fields
from wa_cloud.ai.followup_rules import FollowUpRule, parse_follow_ups, stored_rules
from wa_cloud.ai.prompt import valid_timezone
from wa_cloud.ai.tools import Secrets, Tool, parse_tools
from wa_cloud.asgi import field_bool, field_int, field_number, field_str, reject_unknown
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
    tools: tuple[Tool, ...] = ()
    # The tools' header values: only a fresh PUT (or the reply job) holds them in the clear.
    tool_secrets: Secrets = field(default_factory=dict, repr=False)
    extract_fields: tuple[ExtractField, ...] = ()
    follow_ups: tuple[FollowUpRule, ...] = ()
    has_api_key: bool = False  # a key is stored (GET says so, without it)

    def api_for(self, model: str) -> Api:
        if self.api is not None:
            return self.api
        return "responses" if REASONING_MODEL.match(model) else "chat"


DEFAULTS: Final = BotConfig()

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
    "extract_fields",
    "follow_ups",
)
FIELDS: Final = frozenset({"enabled", "api_key", *COLUMNS})


def bot_json(config: BotConfig) -> dict[str, Any]:
    """The configuration as GET shows it: `api_key` never, `has_api_key` instead."""
    shown = {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if f.name not in ("api_key", "tool_secrets")
    }
    shown["owner_phones"] = list(config.owner_phones)
    shown["tools"] = [t.shown() for t in config.tools]
    shown["extract_fields"] = [f.shown() for f in config.extract_fields]
    shown["follow_ups"] = [r.shown() for r in config.follow_ups]
    return shown


def as_body(config: BotConfig) -> dict[str, Any]:
    """The configuration as a PUT body that keeps it as it is: without `api_key` (the stored
    key stays while `base_url` does) and with the tools' header values null (the stored ones
    stay while each tool's host does). The console lays its form's fields over it."""
    body = bot_json(config)
    del body["has_api_key"]
    return body


def from_row(row: Mapping[str, Any] | None, *, enabled: bool) -> BotConfig:
    """The stored configuration (None: the defaults) with the number's switch."""
    if row is None:
        return BotConfig(enabled=enabled)
    values = {name: row[name] for name in COLUMNS}
    values["owner_phones"] = tuple(values["owner_phones"])
    values["tools"] = tuple(Tool.stored(t) for t in values["tools"] or ())
    values["extract_fields"] = tuple(ExtractField.stored(f) for f in values["extract_fields"] or ())
    values["follow_ups"] = stored_rules(values["follow_ups"])
    return BotConfig(enabled=enabled, has_api_key=row["api_key_enc"] is not None, **values)


def row_values(config: BotConfig) -> list[Any]:
    """The configuration columns' values, in COLUMNS order."""
    values = [getattr(config, name) for name in COLUMNS]
    values[COLUMNS.index("owner_phones")] = list(config.owner_phones)
    values[COLUMNS.index("tools")] = [t.shown() for t in config.tools]
    values[COLUMNS.index("extract_fields")] = [f.shown() for f in config.extract_fields]
    values[COLUMNS.index("follow_ups")] = [r.shown() for r in config.follow_ups]
    return values


def _bad(name: str, rule: str) -> Unprocessable:
    return Unprocessable(f"'{name}' must be {rule}.", "invalid_field")


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _phones(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) > 20:
        raise _bad("owner_phones", "a list of at most 20 phone numbers")
    phones: list[str] = []
    for item in value:
        digits = phone_digits(item) if isinstance(item, str) else None
        if digits is None:
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


def parse_config(
    body: Mapping[str, Any], *, current: BotConfig, tool_secrets: Secrets | None = None
) -> BotConfig:
    """A PUT body as a whole configuration. `api_key` omitted keeps the stored key only when
    the endpoint (`base_url`) stays the same: a key is never sent to a new address unasked (a
    tool's header values likewise with its host; `tool_secrets`: the stored ones)."""
    reject_unknown(body, set(FIELDS))
    timezone = field_str(body, "timezone", required=False, max_length=64) or "UTC"
    if not valid_timezone(timezone):
        raise _bad("timezone", "an IANA time zone such as 'America/Bogota'")
    api = body.get("api")
    if api is not None and api not in ("chat", "responses"):
        raise _bad("api", "'chat', 'responses' or null")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise _bad("reasoning_effort", "one of " + ", ".join(REASONING_EFFORTS) + " or null")
    tools, secrets = parse_tools(
        body.get("tools"), current=current.tools, secrets=tool_secrets or {}
    )
    base_url = _base_url(field_str(body, "base_url", required=False, max_length=2000))
    api_key = field_str(body, "api_key", required=False)
    if api_key is not None and not (api_key.isascii() and api_key.isprintable()):
        raise _bad("api_key", "an API key (printable ASCII)")
    keeps_key = api_key is None and "api_key" not in body and base_url == current.base_url
    d = DEFAULTS
    config = BotConfig(
        enabled=_or(field_bool(body, "enabled"), True),
        instructions=field_str(body, "instructions", required=False, max_length=20_000)
        or d.instructions,
        model=field_str(body, "model", required=False, max_length=200),
        base_url=base_url,
        api_key=api_key,
        api=api,
        reasoning_effort=effort,
        temperature=_or(field_number(body, "temperature", low=0, high=2), d.temperature),
        max_output_tokens=_or(
            field_int(body, "max_output_tokens", low=16, high=32_000), d.max_output_tokens
        ),
        history_turns=_or(field_int(body, "history_turns", low=0, high=200), d.history_turns),
        debounce_seconds=_or(
            field_number(body, "debounce_seconds", low=0, high=60), d.debounce_seconds
        ),
        timezone=timezone,
        owner_phones=_phones(body.get("owner_phones")),
        credits_per_reply=_or(
            field_int(body, "credits_per_reply", low=0, high=1_000_000), d.credits_per_reply
        ),
        retention_hours=_or(
            field_int(body, "retention_hours", low=0, high=24 * 365 * 10), d.retention_hours
        ),
        fallback_text=field_str(body, "fallback_text", required=False, max_length=4096),
        out_of_credits_text=field_str(body, "out_of_credits_text", required=False, max_length=4096),
        media_unavailable_text=field_str(
            body, "media_unavailable_text", required=False, max_length=4096
        ),
        voice_replies=_or(field_bool(body, "voice_replies"), d.voice_replies),
        human_takeover_minutes=_or(
            field_number(body, "human_takeover_minutes", low=0, high=60 * 24 * 30),
            d.human_takeover_minutes,
        ),
        tools=tools,
        tool_secrets=secrets,
        extract_fields=parse_extract_fields(body.get("extract_fields")),
        follow_ups=parse_follow_ups(body.get("follow_ups")),
    )
    # A local server may take no key at all; a stored key is dropped when the URL changes.
    return replace(config, has_api_key=api_key is not None or (keeps_key and current.has_api_key))
