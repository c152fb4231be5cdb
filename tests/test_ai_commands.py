"""Chat commands: what a contact and an owner can say, in Spanish and English, and the replies."""

from __future__ import annotations

import pytest

from wa_cloud.ai.commands import Command, confirmation, parse_command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pausar", Command("pause", language="es")),
        ("PAUSAR", Command("pause", language="es")),
        ("Pausá", Command("pause", language="es")),
        ("pausa", Command("pause", language="es")),
        ("¡Pausar!", Command("pause", language="es")),
        ("  pausar.  ", Command("pause", language="es")),
        ("pause", Command("pause", language="en")),
        ("Pause!", Command("pause", language="en")),
        ("reactivar", Command("resume", language="es")),
        ("Reactivar", Command("resume", language="es")),
        ("REACTIVÁ", Command("resume", language="es")),
        ("resume", Command("resume", language="en")),
        ("RESUME.", Command("resume", language="en")),
        ("estado", Command("status", language="es")),
        ("ESTADO", Command("status", language="es")),
        ("¿Estado?", Command("status", language="es")),
        ("status", Command("status", language="en")),
        ("Status?", Command("status", language="en")),
    ],
)
def test_contact_commands(text: str, expected: Command) -> None:
    assert parse_command(text, from_owner=False) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pausar 573001234567", Command("pause_contact", "573001234567", language="es")),
        ("Pausá +57 300 123 4567", Command("pause_contact", "573001234567", language="es")),
        ("pause +1 (415) 555-0100", Command("pause_contact", "14155550100", language="en")),
        ("reactivar 57-300-123-4567", Command("resume_contact", "573001234567", language="es")),
        ("RESUME +44 20 7946 0958.", Command("resume_contact", "442079460958", language="en")),
        ("pausar todo", Command("pause_all", language="es")),
        ("PAUSAR TODO!", Command("pause_all", language="es")),
        ("pausar todos", Command("pause_all", language="es")),
        ("pause all", Command("pause_all", language="en")),
        ("activar todo", Command("resume_all", language="es")),
        ("Activá todo", Command("resume_all", language="es")),
        ("reactivar todo", Command("resume_all", language="es")),
        ("resume all", Command("resume_all", language="en")),
        ("estado", Command("owner_status", language="es")),
        ("STATUS", Command("owner_status", language="en")),
        # Without an argument an owner acts on their own conversation, like a contact.
        ("pausar", Command("pause", language="es")),
        ("resume", Command("resume", language="en")),
    ],
)
def test_owner_commands(text: str, expected: Command) -> None:
    assert parse_command(text, from_owner=True) == expected


@pytest.mark.parametrize(
    "text",
    [
        "pausar 573001234567",
        "pause +1 (415) 555-0100",
        "reactivar 573001234567",
        "resume 573001234567",
        "pausar todo",
        "pause all",
        "activar todo",
        "reactivar todo",
        "resume all",
    ],
)
def test_owner_commands_from_a_contact_are_not_commands(text: str) -> None:
    assert parse_command(text, from_owner=False) is None


@pytest.mark.parametrize(
    "text",
    [
        "pausar 12345",  # too few digits to be a number
        "pausar 1234567890123456",  # more than E.164's 15
        "pausar ana",
        "pausar 300 abc 1234",
        "pausar 300123456 por favor",
        "pause todo",  # the two languages mixed
        "pausar all",
        "activar",
        "activar 573001234567",
        "estado 573001234567",
    ],
)
def test_malformed_owner_commands_are_not_commands(text: str) -> None:
    assert parse_command(text, from_owner=True) is None


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "   ",
        "!!",
        "no quiero pausar nada",
        "pausar por favor",
        "please pause",
        "what is the status of my order?",
        "estado de mi pedido",
        "hola",
        "pausado",
        "resumen",
    ],
)
@pytest.mark.parametrize("from_owner", [False, True])
def test_other_text_is_not_a_command(text: str | None, from_owner: bool) -> None:
    assert parse_command(text, from_owner=from_owner) is None


def test_full_width_and_extra_spaces_are_normalised() -> None:
    def full_width(word: str) -> str:  # what some phone keyboards type for Latin letters
        return "".join(chr(ord(ch) + 0xFEE0) for ch in word)

    text = f"{full_width('PAUSAR')}\u00a0\u00a0{full_width('todo')}"
    assert parse_command(text, from_owner=True) == Command("pause_all", language="es")
    assert parse_command("pausar \t +57   300\n1234567", from_owner=True) == Command(
        "pause_contact", "573001234567", language="es"
    )


def test_confirmations_of_a_contacts_commands() -> None:
    assert confirmation(Command("pause", language="es")) == (
        "Listo, el asistente queda en pausa. Una persona te responderá."
    )
    assert confirmation(Command("pause", language="en")) == (
        "Done: the assistant is paused; a person will answer you."
    )
    assert "vuelve" in confirmation(Command("resume", language="es"))
    assert "back on" in confirmation(Command("resume", language="en"))
    assert "en pausa" in confirmation(Command("status", language="es"), paused=True)
    assert "activo" in confirmation(Command("status", language="es"), paused=False)
    assert "paused" in confirmation(Command("status", language="en"), paused=True)
    assert "is on" in confirmation(Command("status", language="en"), paused=False)


def test_confirmations_of_commands_on_one_contact() -> None:
    pause_es = Command("pause_contact", "573001234567", language="es")
    resume_en = Command("resume_contact", "573001234567", language="en")
    assert confirmation(pause_es, found=True) == (
        "Listo, el asistente queda en pausa con +573001234567."
    )
    assert confirmation(pause_es, found=False) == (
        "No encontré una conversación con +573001234567."
    )
    assert confirmation(resume_en, found=True) == (
        "Done: the assistant answers +573001234567 again."
    )
    assert confirmation(resume_en, found=False) == "No conversation found with +573001234567."


def test_confirmations_of_commands_on_all_contacts() -> None:
    assert confirmation(Command("pause_all", language="es"), count=3) == (
        "Listo, el asistente queda en pausa para todos (3 conversaciones)."
    )
    assert confirmation(Command("pause_all", language="en"), count=1) == (
        "Done: the assistant is paused for everyone (1 conversation)."
    )
    assert "1 conversación)" in confirmation(Command("resume_all", language="es"), count=1)
    assert "0 conversations)" in confirmation(Command("resume_all", language="en"), count=0)


def test_owner_status() -> None:
    es = confirmation(
        Command("owner_status", language="es"),
        paused=["Ana", "+573001234567"],
        today_inbound=12,
        today_replies=9,
        bot_enabled=True,
    )
    assert es == (
        "Asistente: activo.\n"
        "Hoy: 12 mensajes recibidos, 9 respuestas del asistente.\n"
        "En pausa: Ana, +573001234567."
    )
    en = confirmation(
        Command("owner_status", language="en"),
        paused=[],
        today_inbound=0,
        today_replies=0,
        bot_enabled=False,
    )
    assert en == (
        "Assistant: paused for everyone.\n"
        "Today: 0 messages received, 0 assistant replies.\n"
        "Paused: none."
    )


def test_owner_status_lists_a_bounded_number_of_paused_contacts() -> None:
    names = [f"contact {i}" for i in range(25)]
    text = confirmation(
        Command("owner_status", language="en"),
        paused=names,
        today_inbound=1,
        today_replies=1,
        bot_enabled=True,
    )
    assert "contact 19 and 5 more." in text
    assert "contact 20" not in text


@pytest.mark.parametrize(
    ("command", "facts"),
    [
        (Command("status", language="es"), {}),
        (Command("pause_contact", "573001234567", language="en"), {}),
        (Command("pause_all", language="en"), {"found": True}),
        (Command("owner_status", language="es"), {"today_inbound": 1, "bot_enabled": True}),
        (
            Command("owner_status", language="es"),
            {"paused": True, "today_inbound": 1, "today_replies": 1, "bot_enabled": True},
        ),
    ],
)
def test_a_missing_fact_is_a_programmer_error(command: Command, facts: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        confirmation(command, **facts)  # type: ignore[arg-type]
