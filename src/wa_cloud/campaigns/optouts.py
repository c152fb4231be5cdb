"""Opt-outs learnt while indexing: a contact who writes a stop word as a whole message, and
Meta's `user_preferences` webhook (a user who stopped, or resumed, marketing messages).

Both are rows in `opt_outs`, per number; marketing and free-form campaigns skip them (the API
lists, adds and removes them too). A `resume` from Meta lifts only what Meta's own preference
had set; a contact who writes a start word ("START") lifts only what their own stop word set.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from uuid import UUID

import asyncpg

from wa_cloud.db.queries import Q

# A number's own list (numbers.opt_out_words) replaces these; compared without case, accents
# or punctuation, as the whole message.
DEFAULT_WORDS: Final = (
    "stop",
    "unsubscribe",
    "baja",
    "no mas mensajes",
    "cancelar",
    "parar",
    "sair",
)
# A contact who writes one of these as a whole message takes back their stop word.
START_WORDS: Final = ("start", "unstop", "subscribe", "alta", "volver", "voltar")
_PUNCTUATION = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")
MAX_WORDS_TEXT: Final = 60  # a longer message is a conversation, not a stop word


def folded(text: str) -> str:
    """Lowercase, without accents, punctuation or repeated spaces: "¡No más mensajes!" ->
    "no mas mensajes"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", _PUNCTUATION.sub(" ", plain)).strip()


_DEFAULT_FOLDED: Final = frozenset(folded(w) for w in DEFAULT_WORDS)


def is_stop_word(text: str | None, words: Iterable[str] | None) -> bool:
    if not text or len(text) > MAX_WORDS_TEXT:
        return False
    wanted = _DEFAULT_FOLDED if words is None else {folded(w) for w in words}
    return folded(text) in wanted


_START_FOLDED: Final = frozenset(folded(w) for w in START_WORDS)


def is_start_word(text: str | None) -> bool:
    return bool(text) and len(text or "") <= MAX_WORDS_TEXT and folded(text or "") in _START_FOLDED


def preferences(value: Any) -> list[tuple[str, bool]]:
    """(wa_id, stopped) of a user_preferences value: marketing messages stopped or resumed."""
    if not isinstance(value, Mapping):
        return []
    found: list[tuple[str, bool]] = []
    for item in value.get("user_preferences") or []:
        if not isinstance(item, Mapping) or item.get("category") != "marketing_messages":
            continue
        wa_id, choice = item.get("wa_id"), str(item.get("value", "")).lower()
        if isinstance(wa_id, str) and wa_id.isdigit() and choice in ("stop", "resume"):
            found.append((wa_id, choice == "stop"))
    return found


async def record_opt_outs(
    conn: asyncpg.Connection,
    said: Sequence[tuple[UUID, str, str, str | None, bool]],
    prefs: Sequence[tuple[UUID, str, Mapping[str, Any]]],
) -> None:
    """`said`: (tenant, number, wa_id, text, stopped) of inbound messages that are a stop word
    (stopped) or a start word, the last of each contact's; `prefs`: (tenant, number,
    user_preferences value)."""
    adds = [
        (number, wa_id, tenant, "keyword", (text or "")[:MAX_WORDS_TEXT])
        for tenant, number, wa_id, text, stopped in said
        if stopped
    ]
    started = [(number, wa_id) for _, number, wa_id, _, stopped in said if not stopped]
    resumes: list[tuple[str, str]] = []
    for tenant, number, value in prefs:
        for wa_id, stop in preferences(value):
            if stop:
                adds.append((number, wa_id, tenant, "user_preferences", "marketing_messages"))
            else:
                resumes.append((number, wa_id))
    if adds:
        await conn.execute(Q.add_opt_outs, *(list(column) for column in zip(*adds, strict=True)))
    for lifted, source in ((resumes, "user_preferences"), (started, "keyword")):
        if lifted:
            await conn.execute(
                Q.remove_opt_outs, [r[0] for r in lifted], [r[1] for r in lifted], source
            )
