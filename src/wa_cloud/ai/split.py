"""A long assistant answer as several WhatsApp text messages.

A text body holds at most 4,096 characters. An answer is cut where a reader would pause:
between paragraphs first, packing as many whole paragraphs per message as fit; a paragraph too
long for one message is cut between lines, then between sentences, then between words, and only
a run of text with no space at all is cut mid-word. Whitespace at a cut may change (a blank
line becomes the message boundary); no other character is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable

WHATSAPP_TEXT_LIMIT = 4096

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
_SPACE = re.compile(r"\s+")

# Coarsest first: each level splits only the pieces the previous one left too long, and joins
# the pieces it packs back together with its own separator.
_LEVELS: tuple[tuple[Callable[[str], list[str]], str], ...] = (
    (_PARAGRAPH_BREAK.split, "\n\n"),
    (str.splitlines, "\n"),
    (_SENTENCE_END.split, " "),
    (_SPACE.split, " "),
)


def split_reply(text: str, limit: int = WHATSAPP_TEXT_LIMIT) -> list[str]:
    """Parts of at most `limit` characters each, in order; [] for blank text."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return _split(text.strip(), limit, 0)


def _split(text: str, limit: int, level: int) -> list[str]:
    if not text:
        return []
    if len(text) <= limit:
        return [text]
    if level == len(_LEVELS):
        return [text[start : start + limit] for start in range(0, len(text), limit)]
    split_pieces, separator = _LEVELS[level]
    parts: list[str] = []
    current = ""
    for piece in (p.strip() for p in split_pieces(text)):
        if not piece:
            continue
        if len(piece) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.extend(_split(piece, limit, level + 1))
        elif current and len(current) + len(separator) + len(piece) <= limit:
            current = f"{current}{separator}{piece}"
        else:
            if current:
                parts.append(current)
            current = piece
    if current:
        parts.append(current)
    return parts
