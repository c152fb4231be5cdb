"""Chat commands that control the assistant, answered before (and never sent to) the model.

A contact can pause the assistant to talk to a person, resume it, and ask its state. An owner
phone of the number can also act on another contact's conversation or on all of them. Only a
whole message is a command: "no quiero pausar nada" is a sentence for the model.

Matching ignores case, accents, repeated spaces and surrounding punctuation, so "¡Pausá!",
"PAUSAR" and " pause. " are the same command.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

CommandKind = Literal[
    "pause",
    "resume",
    "status",
    "pause_contact",
    "resume_contact",
    "pause_all",
    "resume_all",
    "owner_status",
]
Language = Literal["es", "en"]
_T = TypeVar("_T")

# Infinitive, and the imperative with and without the voseo accent ("pausá" loses it when
# normalised), since people type all three.
_PAUSE: dict[str, Language] = {"pausar": "es", "pausa": "es", "pause": "en"}
_RESUME: dict[str, Language] = {"reactivar": "es", "reactiva": "es", "resume": "en"}
# "activar" alone is not a command: only "activar todo" is.
_RESUME_ALL_VERBS: dict[str, Language] = {**_RESUME, "activar": "es", "activa": "es"}
_STATUS: dict[str, Language] = {"estado": "es", "status": "en"}
_ALL: dict[str, Language] = {"todo": "es", "todos": "es", "all": "en"}

# A phone number as people write it: digits with "+", spaces, dashes and parentheses.
_NUMBER_SHAPE = re.compile(r"\+?[0-9()\- ]+")
_MIN_DIGITS = 6
_MAX_DIGITS = 15  # E.164 allows at most 15 digits


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind
    target: str | None = None  # digits of the contact's number, for *_contact kinds
    language: Language = field(kw_only=True)  # of the word used, for the confirmation


def _normalise(text: str) -> str:
    """Lower-case, accent-free, single-spaced text without punctuation at its edges."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    words = " ".join(bare.casefold().split())
    start, end = 0, len(words)
    while start < end and _is_edge_noise(words[start]):
        start += 1
    while end > start and _is_edge_noise(words[end - 1]):
        end -= 1
    return words[start:end]


def _is_edge_noise(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def parse_command(text: str | None, *, from_owner: bool) -> Command | None:
    """The command the whole message is, or None when it is ordinary text for the model."""
    if not text:
        return None
    verb, _, argument = _normalise(text).partition(" ")
    if not argument:
        return _parse_bare(verb, from_owner=from_owner)
    if from_owner:
        return _parse_owner(verb, argument)
    return None


def _parse_bare(verb: str, *, from_owner: bool) -> Command | None:
    if verb in _PAUSE:
        return Command("pause", language=_PAUSE[verb])
    if verb in _RESUME:
        return Command("resume", language=_RESUME[verb])
    if verb in _STATUS:
        return Command("owner_status" if from_owner else "status", language=_STATUS[verb])
    return None


def _parse_owner(verb: str, argument: str) -> Command | None:
    if argument in _ALL:
        if verb in _PAUSE and _PAUSE[verb] == _ALL[argument]:
            return Command("pause_all", language=_PAUSE[verb])
        if verb in _RESUME_ALL_VERBS and _RESUME_ALL_VERBS[verb] == _ALL[argument]:
            return Command("resume_all", language=_RESUME_ALL_VERBS[verb])
        return None
    number = phone_digits(argument)
    if number is None:
        return None
    if verb in _PAUSE:
        return Command("pause_contact", number, language=_PAUSE[verb])
    if verb in _RESUME:
        return Command("resume_contact", number, language=_RESUME[verb])
    return None


def phone_digits(argument: str) -> str | None:
    """A phone number as people write it ("+57 300-111 (2233)"), as wa_id digits; None when
    it is not one. Owner phones in the bot configuration are read the same way."""
    if not _NUMBER_SHAPE.fullmatch(argument):
        return None
    digits = "".join(ch for ch in argument if ch.isdigit())
    return digits if _MIN_DIGITS <= len(digits) <= _MAX_DIGITS else None


# An owner's status lists paused conversations by name; past this many the reply says how
# many more, so a busy number's status stays a short message.
_STATUS_NAMES_SHOWN = 20


def confirmation(
    command: Command,
    *,
    paused: bool | Sequence[str] | None = None,
    found: bool | None = None,
    count: int | None = None,
    today_inbound: int | None = None,
    today_replies: int | None = None,
    bot_enabled: bool | None = None,
) -> str:
    """The reply to a command once it has been carried out, in the command's language.

    Facts by kind: status `paused: bool`; pause_contact and resume_contact `found`; pause_all
    and resume_all `count` (conversations affected); owner_status `paused` (names or numbers
    of paused contacts), `today_inbound`, `today_replies` and `bot_enabled`. A fact the kind
    needs and was not given is a programmer error (TypeError).
    """
    es = command.language == "es"
    match command.kind:
        case "pause":
            if es:
                return "Listo, el asistente queda en pausa. Una persona te responderá."
            return "Done: the assistant is paused; a person will answer you."
        case "resume":
            if es:
                return "Listo, el asistente vuelve a responderte."
            return "Done: the assistant is back on."
        case "status":
            if _required(paused, "paused", bool):
                if es:
                    return (
                        "El asistente está en pausa: una persona te responderá. "
                        "Escribe «reactivar» para volver a usarlo."
                    )
                return (
                    'The assistant is paused: a person will answer you. Send "resume" to turn '
                    "it back on."
                )
            if es:
                return "El asistente está activo. Escribe «pausar» para hablar con una persona."
            return 'The assistant is on. Send "pause" to talk to a person.'
        case "pause_contact" | "resume_contact":
            number = f"+{command.target}"
            if not _required(found, "found", bool):
                if es:
                    return f"No encontré una conversación con {number}."
                return f"No conversation found with {number}."
            if command.kind == "pause_contact":
                if es:
                    return f"Listo, el asistente queda en pausa con {number}."
                return f"Done: the assistant is paused for {number}."
            if es:
                return f"Listo, el asistente vuelve a responder a {number}."
            return f"Done: the assistant answers {number} again."
        case "pause_all" | "resume_all":
            conversations = _conversations(_required(count, "count", int), es=es)
            if command.kind == "pause_all":
                if es:
                    return f"Listo, el asistente queda en pausa para todos ({conversations})."
                return f"Done: the assistant is paused for everyone ({conversations})."
            if es:
                return f"Listo, el asistente vuelve a responder a todos ({conversations})."
            return f"Done: the assistant answers everyone again ({conversations})."
        case "owner_status":
            return _owner_status(
                _paused_names(paused),
                inbound=_required(today_inbound, "today_inbound", int),
                replies=_required(today_replies, "today_replies", int),
                enabled=_required(bot_enabled, "bot_enabled", bool),
                es=es,
            )


def _required(value: object, name: str, kind: type[_T]) -> _T:
    if not isinstance(value, kind):
        raise TypeError(f"confirmation needs {name}: {kind.__name__}")
    return value


def _paused_names(paused: bool | Sequence[str] | None) -> list[str]:
    if paused is None or isinstance(paused, bool | str):
        raise TypeError("confirmation needs paused: a list of names for owner_status")
    return list(paused)


def _conversations(count: int, *, es: bool) -> str:
    if es:
        return "1 conversación" if count == 1 else f"{count} conversaciones"
    return "1 conversation" if count == 1 else f"{count} conversations"


def _owner_status(paused: list[str], *, inbound: int, replies: int, enabled: bool, es: bool) -> str:
    shown = ", ".join(paused[:_STATUS_NAMES_SHOWN])
    hidden = len(paused) - _STATUS_NAMES_SHOWN
    if es:
        lines = [
            "Asistente: activo." if enabled else "Asistente: en pausa para todos.",
            f"Hoy: {inbound} mensajes recibidos, {replies} respuestas del asistente.",
        ]
        if not paused:
            lines.append("En pausa: ninguna conversación.")
        else:
            more = f" y {hidden} más" if hidden > 0 else ""
            lines.append(f"En pausa: {shown}{more}.")
        return "\n".join(lines)
    lines = [
        "Assistant: on." if enabled else "Assistant: paused for everyone.",
        f"Today: {inbound} messages received, {replies} assistant replies.",
    ]
    if not paused:
        lines.append("Paused: none.")
    else:
        more = f" and {hidden} more" if hidden > 0 else ""
        lines.append(f"Paused: {shown}{more}.")
    return "\n".join(lines)
