"""The assistant end to end: a customer writes through the sandbox Meta, the worker answers with
the number's assistant through the real `openai` and `google-genai` SDKs (the sandbox's model
fakes on loopback), and the answer leaves through the outbox to the sandbox's Graph API.

What is asserted: the exact request the model got, the exact message Meta got, and the rows
(replies, ledger, usage, audit) in the database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from typing import Any

import asyncpg
import imageio_ffmpeg
import pytest

from tests.conftest import (
    NUMBER_A,
    Meta,
    configure_bot,
    give_credits,
    meta_running,
    model_requests,
    replies_done,
    sent_to_customer,
    start_worker,
)
from wa_cloud.config import Settings

CUSTOMER = "16505551234"
OWNER = "573001112233"


async def test_one_reply_with_rendered_instructions_and_history(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await give_credits(db, bot)
    await configure_bot(
        bot, instructions="You answer for {{business_name}}. Customer: {{contact_name}}."
    )
    await bot.customer_writes("hola", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 1)
    assert sent == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": "text",
            "text": {"body": "hola"},
        }
    ]
    await bot.customer_writes("¿y el precio?", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 2)
    assert sent[1]["text"] == {"body": "¿y el precio?"}
    chat = await model_requests(bot, "chat")
    assert len(chat) == 2
    messages = chat[1]["body"]["messages"]
    assert messages[0]["role"] == "system"
    # The business's name is the number's verified name at Meta.
    assert messages[0]["content"] == "You answer for Sandbox Business. Customer: Sandbox Customer."
    # The history from the database: the first turn and our answer, then the new message.
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "hola"),
        ("assistant", "hola"),
        ("user", "¿y el precio?"),
    ]
    assert chat[1]["body"]["model"] == "echo"
    rows = await replies_done(db, 2)
    assert [r["outcome"] for r in rows] == ["answered", "answered"]
    ledger = await db.fetch("SELECT amount, reason, reply_id FROM credit_ledger ORDER BY id")
    assert [(r["amount"], r["reason"]) for r in ledger] == [(-2, "reply"), (-2, "reply")]
    assert await db.fetchval("SELECT credits_balance FROM tenants") == 96
    usage = await db.fetchrow("SELECT * FROM token_usage WHERE feature = 'reply'")
    assert usage["calls"] == 2 and usage["model"] == "echo" and usage["input_tokens"] > 0
    out = await db.fetch("SELECT author, text FROM messages WHERE direction = 'out' ORDER BY 2")
    assert [(r["author"], r["text"]) for r in out] == [("bot", "hola"), ("bot", "¿y el precio?")]
    # Marked read with the typing indicator.
    requests = await bot.sandbox.get("/_sandbox/requests", params={"path_contains": "/messages"})
    reads = [r["body"] for r in requests.json()["data"] if r["body"].get("status") == "read"]
    assert reads and reads[0]["typing_indicator"] == {"type": "text"}


async def test_a_burst_in_the_debounce_gets_one_reply(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await configure_bot(bot, debounce_seconds=1.0)
    for text in ("hola", "quiero una pizza", "grande"):
        await bot.customer_writes(text, sender=CUSTOMER)
    rows = await replies_done(db, 1)
    assert len(rows) == 1
    sent = await sent_to_customer(bot, 1)
    await asyncio.sleep(0.3)
    assert len(await bot.sent_bodies()) == 1
    # One turn covering all three messages.
    chat = await model_requests(bot, "chat")
    assert len(chat) == 1
    assert chat[0]["body"]["messages"][-1] == {
        "role": "user",
        "content": "hola\nquiero una pizza\ngrande",
    }
    assert sent[0]["text"]["body"] == "hola\nquiero una pizza\ngrande"
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 1


async def test_redelivered_message_is_answered_once(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await configure_bot(bot, debounce_seconds=0.5)
    wamid = await bot.customer_writes("hola", sender=CUSTOMER)
    delivery = await db.fetchval("SELECT body FROM deliveries ORDER BY id LIMIT 1")
    for _ in range(4):  # Meta delivers the same body again
        response = await bot.app.post_webhook(bytes(delivery))
        assert response.status_code == 200
    await replies_done(db, 1)
    await sent_to_customer(bot, 1)
    await asyncio.sleep(0.5)
    assert len(await bot.sent_bodies()) == 1
    assert await db.fetchval("SELECT count(*) FROM messages WHERE wamid = $1", wamid) == 1
    assert await db.fetchval("SELECT count(*) FROM replies") == 1


async def test_responses_api_for_reasoning_models(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await bot.sandbox.post("/_models/script", json={"replies": ["Claro, te ayudo."]})
    await configure_bot(bot, model="o4-mini", reasoning_effort="low", instructions="Be brief.")
    await bot.customer_writes("ayuda", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 1)
    assert sent[0]["text"] == {"body": "Claro, te ayudo."}
    responses = await model_requests(bot, "responses")
    assert len(responses) == 1
    body = responses[0]["body"]
    assert body["model"] == "o4-mini"
    assert body["instructions"] == "Be brief."
    assert body["reasoning"] == {"effort": "low"}
    assert body["input"][-1] == {"role": "user", "content": "ayuda"}
    assert "temperature" not in body
    assert await model_requests(bot, "chat") == []


async def test_model_outage_sends_the_fallback_once(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    # More failures than the SDK's retries: the answer never comes.
    await bot.sandbox.post("/_models/script", json={"fail": [500, 500, 500, 500]})
    await configure_bot(
        bot, model="gpt-4.1-mini", fallback_text="Ahora no puedo, te escribo pronto."
    )
    await bot.customer_writes("hola", sender=CUSTOMER)
    rows = await replies_done(db, 1, timeout=30)
    assert rows[0]["outcome"].startswith("model failed")
    sent = await sent_to_customer(bot, 1)
    await asyncio.sleep(0.3)
    assert [b["text"]["body"] for b in await bot.sent_bodies()] == [
        "Ahora no puedo, te escribo pronto."
    ]
    assert len(await model_requests(bot, "chat")) == 3  # the first try and the SDK's 2 retries
    assert sent[0]["to"] == CUSTOMER
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 0
    event = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'bot.model_failed'")
    assert event is not None and event["severity"] == "error"


async def test_an_empty_answer_sends_nothing(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await bot.sandbox.post("/_models/script", json={"empty": True})
    await configure_bot(bot, model="gpt-4.1-mini")
    await bot.customer_writes("hola", sender=CUSTOMER)
    rows = await replies_done(db, 1)
    assert rows[0]["outcome"] == "answered: the model said nothing"
    assert await bot.sent_bodies() == []
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 0


async def test_a_long_answer_leaves_in_parts_in_order(bot: Meta, db: asyncpg.Connection) -> None:
    """The parts are queued in one transaction (one created_at), and Meta answers the first
    one late: they still reach Meta in order, each after the one before was accepted."""
    await give_credits(db, bot)
    late = {"phone_number_id": NUMBER_A, "delay_seconds": 0.5, "times": 1}
    assert (await bot.sandbox.post("/_sandbox/faults", json=late)).status_code in (200, 201)
    paragraphs = [f"Part {i}: " + "word " * 700 for i in range(1, 6)]  # 3,507 characters each
    response = await bot.sandbox.post(
        "/_models/script", json={"replies": ["\n\n".join(p.strip() for p in paragraphs)]}
    )
    assert response.status_code in (200, 201), response.text
    await configure_bot(bot, model="gpt-4.1-mini")
    await bot.customer_writes("tell me everything", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 5)
    await replies_done(db, 1)
    assert [b["text"]["body"] for b in sent] == [p.strip() for p in paragraphs]
    times = await db.fetch("SELECT created_at FROM messages WHERE direction = 'out' ORDER BY seq")
    assert len({t["created_at"] for t in times}) == 1  # one transaction, one time


async def test_a_part_meta_asks_to_retry_is_not_overtaken_by_the_next(
    bot: Meta, db: asyncpg.Connection
) -> None:
    """Meta refuses the first part with a transient error: the parts after it wait for its
    retry instead of leaving before it."""
    await give_credits(db, bot)
    refused = {"phone_number_id": NUMBER_A, "code": 131000, "times": 1}
    assert (await bot.sandbox.post("/_sandbox/faults", json=refused)).status_code in (200, 201)
    paragraphs = [f"Part {i}: " + "word " * 700 for i in range(1, 4)]
    response = await bot.sandbox.post(
        "/_models/script", json={"replies": ["\n\n".join(p.strip() for p in paragraphs)]}
    )
    assert response.status_code in (200, 201), response.text
    await configure_bot(bot, model="gpt-4.1-mini")
    await bot.customer_writes("tell me everything", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 4)  # the refused attempt, then the three accepted
    assert [b["text"]["body"] for b in sent] == [paragraphs[0].strip()] + [
        p.strip() for p in paragraphs
    ]
    attempts = await db.fetch("SELECT attempts FROM messages WHERE direction = 'out' ORDER BY seq")
    assert [r["attempts"] for r in attempts] == [2, 1, 1]


async def test_out_of_credits_calls_no_model(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot, 1)
    await configure_bot(bot, credits_per_reply=2, out_of_credits_text="Sin saldo por ahora.")
    await bot.customer_writes("hola", sender=CUSTOMER)
    rows = await replies_done(db, 1)
    assert rows[0]["outcome"] == "skipped: out of credits"
    sent = await sent_to_customer(bot, 1)
    assert [b["text"]["body"] for b in sent] == ["Sin saldo por ahora."]
    assert await model_requests(bot) == []
    assert await db.fetchval("SELECT credits_balance FROM tenants") == 1
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 0
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'bot.out_of_credits'")


async def test_off_paused_inactive_or_group_send_nothing(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await configure_bot(bot, enabled=False)
    await bot.customer_writes("hola", sender=CUSTOMER)
    # The assistant is off: no job at all.
    assert await db.fetchval("SELECT count(*) FROM replies") == 0
    number = await bot.app.client.get(f"/v1/numbers/{NUMBER_A}", headers=bot.tenant())
    assert number.json()["bot_enabled"] is False

    await configure_bot(bot)  # on again
    await db.execute("UPDATE contacts SET bot_paused = true")
    await bot.customer_writes("sigues?", sender=CUSTOMER)
    rows = await replies_done(db, 1)
    assert rows[-1]["outcome"] == "skipped: conversation paused"

    await db.execute("UPDATE contacts SET bot_paused = false")
    await db.execute("UPDATE tenants SET active = false")
    await bot.customer_writes("hola otra vez", sender=CUSTOMER)
    rows = await replies_done(db, 2)
    assert rows[-1]["outcome"] == "skipped: tenant inactive"
    await db.execute("UPDATE tenants SET active = true")

    group = {"type": "text", "text": {"body": "hola grupo"}, "group_id": "120363000000000001"}
    response = await bot.sandbox.post(
        "/_sandbox/inbound",
        json={"phone_number_id": NUMBER_A, "from": CUSTOMER, "message": group},
    )
    assert response.status_code == 200, response.text
    async with asyncio.timeout(10):
        while not await db.fetchval("SELECT count(*) FROM messages WHERE text = 'hola grupo'"):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM replies") == 2
    assert await bot.sent_bodies() == []
    assert await model_requests(bot) == []


async def test_closed_window_sends_nothing(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await configure_bot(bot, debounce_seconds=0.5)
    await bot.customer_writes("hola", sender=CUSTOMER)
    # Meta said 131047 meanwhile (the window closed after the message).
    await db.execute("UPDATE contacts SET window_closed_at = now() + interval '1 minute'")
    rows = await replies_done(db, 1)
    assert rows[0]["outcome"] == "skipped: customer-service window closed"
    assert await bot.sent_bodies() == []


@pytest.mark.parametrize(
    ("pause", "resume", "status", "language"),
    [("pausar", "Reactivar", "ESTADO", "es"), ("Pause", "resume", "status", "en")],
)
async def test_contact_commands(
    bot: Meta, db: asyncpg.Connection, pause: str, resume: str, status: str, language: str
) -> None:
    await give_credits(db, bot)
    await configure_bot(bot)
    await bot.customer_writes(pause, sender=CUSTOMER)
    await replies_done(db, 1)
    assert await db.fetchval("SELECT bot_paused FROM contacts WHERE wa_id = $1", CUSTOMER)
    await bot.customer_writes("hola", sender=CUSTOMER)  # a human answers now: no bot
    rows = await replies_done(db, 2)
    assert rows[-1]["outcome"] == "skipped: conversation paused"
    await bot.customer_writes(status, sender=CUSTOMER)
    await replies_done(db, 3)
    await bot.customer_writes(resume, sender=CUSTOMER)
    await replies_done(db, 4)
    assert not await db.fetchval("SELECT bot_paused FROM contacts WHERE wa_id = $1", CUSTOMER)
    sent = await sent_to_customer(bot, 3)
    assert len(sent) == 3  # three confirmations; no model answer
    assert await model_requests(bot) == []
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 0
    paused_word = "pausa" if language == "es" else "paused"
    assert paused_word in sent[0]["text"]["body"].lower()


async def test_owner_commands(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await configure_bot(bot, owner_phones=["+57 300 111 2233"])
    await bot.customer_writes("hola", sender=CUSTOMER)
    await replies_done(db, 1)
    await bot.customer_writes(f"pausar +{CUSTOMER}", sender=OWNER)
    await replies_done(db, 2)
    assert await db.fetchval("SELECT paused_by FROM contacts WHERE wa_id = $1", CUSTOMER) == "owner"
    await bot.customer_writes("resume " + CUSTOMER, sender=OWNER)
    await replies_done(db, 3)
    assert not await db.fetchval("SELECT bot_paused FROM contacts WHERE wa_id = $1", CUSTOMER)
    await bot.customer_writes("pause all", sender=OWNER)
    await replies_done(db, 4)
    assert not await db.fetchval("SELECT bot_enabled FROM numbers")
    # Off: a customer's message schedules nothing, the owner's commands still work.
    await bot.customer_writes("hola?", sender=CUSTOMER)
    await bot.customer_writes("activar todo", sender=OWNER)
    await replies_done(db, 5)
    assert await db.fetchval("SELECT bot_enabled FROM numbers")
    await bot.customer_writes("estado", sender=OWNER)
    await replies_done(db, 6)
    sent = await sent_to_customer(bot, 6)
    to_owner = [b["text"]["body"] for b in sent if b["to"] == OWNER]
    assert len(to_owner) == 5
    # "pausar <number>" from a customer is not a command: the model answers it.
    await bot.customer_writes(f"pausar {OWNER}", sender=CUSTOMER)
    await replies_done(db, 7)
    assert len(await model_requests(bot, "chat")) == 2


def _ogg_voice_note() -> bytes:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi"]
    command += ["-i", "sine=frequency=440:duration=1", "-ac", "1", "-ar", "48000"]
    command += ["-c:a", "libopus", "-f", "ogg", "pipe:1"]
    return subprocess.run(command, capture_output=True, check=True).stdout


async def _customer_sends_media(
    meta: Meta, kind: str, content: bytes, mime: str, **extra: Any
) -> None:
    token = "EAAG-test-token-" + NUMBER_A
    uploaded = await meta.sandbox.post(
        f"/v23.0/{NUMBER_A}/media",
        headers={"authorization": f"Bearer {token}"},
        files={"file": ("file", content, mime)},
        data={"messaging_product": "whatsapp", "type": mime},
    )
    assert uploaded.status_code == 200, uploaded.text
    message = {"type": kind, kind: {"id": uploaded.json()["id"], "mime_type": mime, **extra}}
    response = await meta.sandbox.post(
        "/_sandbox/inbound",
        json={"phone_number_id": NUMBER_A, "from": CUSTOMER, "message": message},
    )
    assert response.status_code == 200, response.text


def _probe(content: bytes, tmp: Any) -> str:
    path = tmp / "reply.ogg"
    path.write_bytes(content)
    done = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
    )
    return done.stderr.decode()


async def test_voice_note_transcribed_and_answered_by_voice(
    bot: Meta, db: asyncpg.Connection, tmp_path: Any
) -> None:
    await give_credits(db, bot)
    await configure_bot(bot, voice_replies=True)
    await _customer_sends_media(
        bot, "audio", _ogg_voice_note(), "audio/ogg; codecs=opus", voice=True
    )
    rows = await replies_done(db, 1, timeout=30)
    assert rows[0]["outcome"] == "answered", rows[0]["outcome"]
    transcript = await db.fetchval("SELECT media_text FROM messages WHERE direction = 'in'")
    assert transcript == "Transcript: hola, quiero saber el precio"
    gemini = await model_requests(bot, "gemini")
    assert len(gemini) == 1
    chat = await model_requests(bot, "chat")
    assert chat[0]["body"]["messages"][-1]["content"] == f"[voice note] {transcript}"
    speech = await model_requests(bot, "speech")
    assert speech[0]["body"]["response_format"] == "opus"
    sent = await sent_to_customer(bot, 1)
    assert sent[0]["type"] == "audio"
    media_id = sent[0]["audio"]["id"]
    token = "EAAG-test-token-" + NUMBER_A
    info = await bot.sandbox.get(f"/v23.0/{media_id}", headers={"authorization": f"Bearer {token}"})
    assert info.status_code == 200, info.text
    download = await bot.sandbox.get(
        info.json()["url"], headers={"authorization": f"Bearer {token}"}
    )
    probe = _probe(download.content, tmp_path)
    assert "Audio: opus" in probe and "ogg" in probe, probe
    # The read API shows the transcript as the message's text.
    listed = await bot.app.client.get(
        f"/v1/contacts/{CUSTOMER}/messages",
        params={"phone_number_id": NUMBER_A},
        headers=bot.tenant(),
    )
    inbound = [m for m in listed.json()["data"] if m["direction"] == "in"]
    assert inbound[0]["text"] == transcript
    usage = {r["feature"] for r in await db.fetch("SELECT feature FROM token_usage")}
    assert usage == {"transcription", "reply", "speech"}


async def test_image_described(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await configure_bot(bot)
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    await _customer_sends_media(bot, "image", png, "image/png", caption="¿tienen esta?")
    rows = await replies_done(db, 1, timeout=30)
    assert rows[0]["outcome"] == "answered"
    chat = await model_requests(bot, "chat")
    assert chat[0]["body"]["messages"][-1]["content"] == (
        "[image] An image: a red bicycle in front of a shop.\n¿tienen esta?"
    )
    gemini = await model_requests(bot, "gemini")
    assert json.dumps(gemini[0]["body"]).count("image/png") >= 1


async def test_a_worker_killed_mid_reply_still_answers_once(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """The worker dies while the model is thinking: the job's lease runs out, another worker
    answers it, and the customer gets one reply."""
    async with meta_running(settings, run_worker=False, models=True) as web:
        local = web.app.settings
        env = {
            "OPENAI_BASE_URL": local.openai_base_url or "",
            "OPENAI_API_KEY": "sk-sandbox-platform",
            "WA_AI_MODEL": "echo",
        }
        await give_credits(db, web)
        await configure_bot(web)
        await web.sandbox.post("/_models/script", json={"delay_seconds": 3})
        first = start_worker(local, **env)
        try:
            await web.customer_writes("hola", sender=CUSTOMER)
            async with asyncio.timeout(15):
                while await db.fetchval("SELECT state FROM replies") != "running":
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)  # the model is thinking
        finally:
            first.kill()
            first.wait()
        assert await web.sent_bodies() == []
        await web.sandbox.delete("/_models/script")
        second = start_worker(local, **env)
        try:
            rows = await replies_done(db, 1, timeout=30)
            sent = await sent_to_customer(web, 1)
            await asyncio.sleep(0.5)
            assert len(await web.sent_bodies()) == 1
        finally:
            second.terminate()
            second.wait()
    assert rows[0]["outcome"] == "answered" and rows[0]["attempts"] == 2
    assert [b["text"]["body"] for b in sent] == ["hola"]
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 1
    assert await db.fetchval("SELECT count(*) FROM messages WHERE direction = 'out'") == 1


async def test_purged_turns_never_reach_the_model(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await configure_bot(bot)
    await bot.customer_writes("mi tarjeta es 4111", sender=CUSTOMER)
    await replies_done(db, 1)
    await sent_to_customer(bot, 1)
    # Past the number's retention_hours (the retention consumer's purge, as it leaves rows).
    await db.execute("UPDATE messages SET text = NULL, payload = '{}', purged_at = now()")
    await bot.customer_writes("hola", sender=CUSTOMER)
    await replies_done(db, 2)
    chat = await model_requests(bot, "chat")
    assert [m["content"] for m in chat[1]["body"]["messages"][1:]] == ["hola"]


async def test_without_gemini_media_gets_the_polite_reply_once(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with meta_running(settings, models=True, gemini=False) as meta:
        await give_credits(db, meta)
        await configure_bot(meta, debounce_seconds=1.0)
        for _ in range(2):  # two voice notes in one burst
            await _customer_sends_media(
                meta, "audio", _ogg_voice_note(), "audio/ogg; codecs=opus", voice=True
            )
        rows = await replies_done(db, 1, timeout=30)
        assert rows[0]["outcome"] == "answered: media not understood"
        sent = await sent_to_customer(meta, 1)
        await asyncio.sleep(0.3)
        assert len(await meta.sent_bodies()) == 1
        assert "no puedo escuchar audios" in sent[0]["text"]["body"]
        assert await model_requests(meta) == []
        assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 0


async def test_the_reply_is_forwarded_to_the_tenants_webhook(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await give_credits(db, bot)
    await configure_bot(bot)
    hook = await bot.app.client.put(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["bot.reply"]},
        headers=bot.tenant(),
    )
    assert hook.status_code == 200, hook.text
    await bot.customer_writes("hola", sender=CUSTOMER)
    rows = await replies_done(db, 1)
    forwards = await db.fetch("SELECT event, payload FROM forwards ORDER BY id")
    assert [f["event"] for f in forwards] == ["bot.reply"]
    payload = forwards[0]["payload"]
    sent = await db.fetchrow("SELECT id, text FROM messages WHERE author = 'bot'")
    assert payload == {
        "phone_number_id": NUMBER_A,
        "to": CUSTOMER,
        "reply_id": rows[0]["id"],
        "outcome": "answered",
        "messages": [{"id": str(sent["id"]), "type": "text", "text": "hola"}],
    }
