"""Template sends checked against the template as last fetched from the WABA.

Meta refuses a template whose parameters do not match with 132000 (count) or 132012 (format),
after the send was queued and paced. We hold each WABA's templates (fetched on first use and
refreshed when a template status webhook arrives) and refuse the mismatch with a clear 422.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from wa_cloud.db.queries import Q
from wa_cloud.errors import Unprocessable

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MEDIA_FORMATS = {
    "IMAGE": "image",
    "VIDEO": "video",
    "DOCUMENT": "document",
    "LOCATION": "location",
}


def placeholders(text: str | None) -> list[str]:
    """The distinct placeholders of a template text, in order of first appearance."""
    seen: list[str] = []
    for name in _PLACEHOLDER.findall(text or ""):
        if name not in seen:
            seen.append(name)
    return seen


def _params(components: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    for component in components:
        if str(component.get("type", "")).lower() == kind:
            params = component.get("parameters") or []
            return [p for p in params if isinstance(p, Mapping)]
    return []


def _mismatch(message: str) -> Unprocessable:
    return Unprocessable(message, "template_parameter_mismatch")


def check_parameters(template: Mapping[str, Any], sent: Mapping[str, Any]) -> None:
    """Compare the components of a send with the stored template; raise 422 on a mismatch."""
    stored = [c for c in template.get("components") or [] if isinstance(c, Mapping)]
    given = [c for c in sent.get("components") or [] if isinstance(c, Mapping)]
    named = str(template.get("parameter_format") or "POSITIONAL").upper() == "NAMED"
    for component in stored:
        kind = str(component.get("type", "")).upper()
        if kind == "BODY" or (kind == "HEADER" and component.get("format") == "TEXT"):
            expected = placeholders(component.get("text"))
            params = _params(given, kind.lower())
            if len(params) != len(expected):
                raise _mismatch(
                    f"template {kind.lower()} expects {len(expected)} parameter(s), "
                    f"got {len(params)}."
                )
            if named:
                names = [p.get("parameter_name") for p in params]
                if sorted(map(str, names)) != sorted(expected):
                    raise _mismatch(
                        f"template {kind.lower()} expects parameters named {', '.join(expected)}."
                    )
            for param in params:
                if param.get("type") not in ("text", "currency", "date_time"):
                    raise _mismatch(f"template {kind.lower()} parameters must be text.")
        elif kind == "HEADER" and component.get("format") in _MEDIA_FORMATS:
            media = _MEDIA_FORMATS[str(component["format"])]
            params = _params(given, "header")
            if len(params) != 1 or params[0].get("type") != media:
                raise _mismatch(f"template header expects one {media} parameter.")
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                needs = button.get("type") in ("URL",) and placeholders(button.get("url"))
                needs = needs or button.get("type") == "COPY_CODE"
                sent_buttons = [
                    c
                    for c in given
                    if str(c.get("type")).lower() == "button" and str(c.get("index")) == str(index)
                ]
                if needs and not sent_buttons:
                    raise _mismatch(f"template button {index} expects a parameter.")


async def cached_template(
    conn: asyncpg.Connection, waba_id: str, name: str, language: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(Q.cached_template, waba_id, name, language)


def rejection_of(template: Mapping[str, Any]) -> str | None:
    reason = template.get("rejected_reason")
    return reason if isinstance(reason, str) and reason.upper() != "NONE" else None


def quality_of(template: Mapping[str, Any]) -> str | None:
    score = template.get("quality_score")
    value = score.get("score") if isinstance(score, Mapping) else None
    return value if isinstance(value, str) else None


async def save_templates(
    conn: asyncpg.Connection, waba_id: str, templates: Sequence[Mapping[str, Any]]
) -> None:
    for t in templates:
        await conn.execute(
            Q.save_template,
            waba_id,
            t.get("name"),
            t.get("language"),
            str(t.get("id")) if t.get("id") is not None else None,
            t.get("status") or "UNKNOWN",
            t.get("category"),
            t.get("parameter_format"),
            list(t.get("components") or []),
            rejection_of(t),
            quality_of(t),
        )


# Meta's template webhooks: a status or a quality is written over the stored template (the
# list shows it at once); a change of components or category drops it, to be fetched again.
STATUS_FIELD = "message_template_status_update"
QUALITY_FIELD = "message_template_quality_update"
# A template Meta no longer sends: campaigns using it pause rather than fail every recipient.
STOPPED = frozenset({"PAUSED", "DISABLED", "REJECTED", "PENDING_DELETION", "DELETED"})


async def apply_template_news(
    conn: asyncpg.Connection, news: Sequence[tuple[str, UUID, Any]]
) -> None:
    """`news`: (WABA, tenant, FieldEvent) of the template fields, for the WABA its source
    speaks for."""
    for waba, tenant_id, event in news:  # rare: a template's news, not a stream
        value = event.raw.get("value")
        if not isinstance(value, Mapping):
            continue
        name = value.get("message_template_name")
        given = value.get("message_template_language")
        language = given if isinstance(given, str) else None  # any other shape: all languages
        if not isinstance(name, str):
            continue
        if event.field == STATUS_FIELD and isinstance(value.get("event"), str):
            shown = rejection_of({"rejected_reason": value.get("reason")})
            status = value["event"].upper()
            await conn.execute(Q.update_template_status, waba, name, language, status, shown)
            if status in STOPPED:
                stopped = await conn.fetch(Q.template_broadcasts, waba, name, language, tenant_id)
                await conn.execute(
                    Q.stop_broadcasts,
                    [r["id"] for r in stopped],
                    "paused",
                    f"template_{status.lower()}",
                    None,
                )
        elif event.field == QUALITY_FIELD and isinstance(value.get("new_quality_score"), str):
            await conn.execute(
                Q.update_template_quality, waba, name, language, value["new_quality_score"]
            )
        else:
            await conn.execute(Q.forget_template, waba, name)


# After the WABA's list was fetched and a name was not on it, sends naming it are refused from
# memory for this long: a flood of sends with made-up names costs Meta one call per WABA.
UNKNOWN_TEMPLATE_SECONDS = 30.0


class TemplateFetches:
    """This process's fetches of WABAs' template lists: one at a time per WABA (concurrent
    sends that miss the cache wait for the same fetch), and brief memory of names not found."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._fetched_at: dict[str, float] = {}
        self._failed: dict[str, tuple[float, Exception]] = {}
        self._missing: dict[tuple[str, str, str], float] = {}

    def known_missing(self, waba_id: str, name: str, language: str) -> bool:
        until = self._missing.get((waba_id, name, language))
        return until is not None and until > time.monotonic()

    def remember_missing(self, waba_id: str, name: str, language: str) -> None:
        if len(self._missing) > 10_000:
            self._missing.clear()
        self._missing[(waba_id, name, language)] = time.monotonic() + UNKNOWN_TEMPLATE_SECONDS

    def fetched_within(self, waba_id: str, seconds: float) -> bool:
        """Whether this process fetched (or failed to fetch) the WABA's list that recently."""
        since = time.monotonic() - seconds
        failed = self._failed.get(waba_id)
        return self._fetched_at.get(waba_id, 0.0) > since or (
            failed is not None and failed[0] > since
        )

    async def fetch_once(self, waba_id: str, fetch_and_save: Callable[[], Awaitable[None]]) -> None:
        """Fetch and save the WABA's templates, unless a fetch of it finished (and was saved)
        while this caller waited for the lock: then the cache is already that fresh."""
        asked = time.monotonic()
        lock = self._locks.setdefault(waba_id, asyncio.Lock())
        async with lock:
            if self._fetched_at.get(waba_id, 0.0) > asked:
                return
            failed = self._failed.get(waba_id)
            if failed is not None and failed[0] > asked:
                raise failed[1]  # Meta just failed this fetch: the waiters do not ask again
            try:
                await fetch_and_save()
            except Exception as exc:
                self._failed[waba_id] = (time.monotonic(), exc)
                raise
            self._fetched_at[waba_id] = time.monotonic()
