"""The console's inbox (console/inbox.py): conversations with unread counts, a thread with its
ticks and media, the composer through the API's own send path (text, files, templates outside
the window), pausing the assistant, the contact's memory, search, and another tenant's ids."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import pytest

from tests.conftest import NUMBER_A, WABA, Meta
from tests.console_client import ConsoleUser

pytestmark = pytest.mark.asyncio

CUSTOMER = "16505551234"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200)
FRAGMENT = {"x-console-fragment": "1"}


async def customer_writes(meta: Meta, text: str, sender: str = CUSTOMER, name: str = "") -> None:
    """The customer writes through the sandbox Meta (under `name`); wait until we stored it."""
    response = await meta.sandbox.post(
        "/_sandbox/inbound",
        json={"phone_number_id": NUMBER_A, "from": sender, "text": text}
        | ({"name": name} if name else {}),
    )
    assert response.status_code == 200, response.text
    wamid = response.json()["id"]
    async with asyncio.timeout(10):
        while not await meta_message(meta, wamid):
            await asyncio.sleep(0.02)


async def meta_message(meta: Meta, wamid: str) -> bool:
    listed = await meta.app.client.get(
        "/v1/contacts?phone_number_id=" + NUMBER_A, headers=meta.tenant()
    )
    for contact in listed.json()["data"]:
        messages = await meta.app.client.get(
            f"/v1/contacts/{contact['wa_id']}/messages",
            params={"phone_number_id": NUMBER_A},
            headers=meta.tenant(),
        )
        if any(m["wamid"] == wamid for m in messages.json()["data"]):
            return True
    return False


async def contact_id(db: asyncpg.Connection, wa_id: str = CUSTOMER) -> int:
    found = await db.fetchval(
        "SELECT id FROM contacts WHERE phone_number_id = $1 AND wa_id = $2", NUMBER_A, wa_id
    )
    assert found is not None
    return int(found)


def unread_of(page: str, title: str) -> str | None:
    """The unread badge of the conversation titled `title` in a list, or None."""
    for item in re.findall(r"<li>(.*?)</li>", page, re.S):
        if f'<span class="conversation-title">{title}</span>' in item:
            badge = re.search(r'<span class="unread">(\d+\+?)<', item)
            return badge.group(1) if badge else None
    raise AssertionError(f"{title} is not listed")


async def wait_sent(meta: Meta, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        while len(bodies := await meta.sent_bodies()) < count:
            await asyncio.sleep(0.05)
    return bodies


async def test_an_inbound_message_is_listed_unread_until_the_thread_is_opened(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await customer_writes(meta, "Is the shop open on Sunday?", name="Ana Lima")
    contact = await contact_id(db)
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        inbox = await owner.get("/console/inbox")
        assert inbox.status_code == 200, inbox.text
        assert unread_of(inbox.text, "Ana Lima") == "1"
        assert "Is the shop open on Sunday?" in inbox.text
        assert f'href="/console/inbox/{NUMBER_A}/{contact}"' in inbox.text
        assert 'data-live="message contact"' in inbox.text
        listed = await owner.get(f"/console/inbox/{NUMBER_A}/list", headers=FRAGMENT)
        assert listed.status_code == 200
        assert unread_of(listed.text, "Ana Lima") == "1"
        assert "<html" not in listed.text

        thread = await owner.get(f"/console/inbox/{NUMBER_A}/{contact}")
        assert thread.status_code == 200, thread.text
        bubble = re.search(
            r'<article class="bubble" id="m-[^"]+">(.*?)</article>', thread.text, re.S
        )
        assert bubble and "Is the shop open on Sunday?" in bubble.group(1)
        assert 'data-live="message"' in thread.text and 'data-stick="bottom"' in thread.text
        assert await db.fetchval("SELECT read_at FROM contacts WHERE id = $1", contact)
        assert unread_of((await owner.get("/console/inbox")).text, "Ana Lima") is None

        messages = await owner.get(
            f"/console/inbox/{NUMBER_A}/{contact}/messages", headers=FRAGMENT
        )
        assert messages.status_code == 200
        assert "Is the shop open on Sunday?" in messages.text


async def test_text_from_the_console_goes_out_as_the_api_sends_it(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await customer_writes(meta, "Do you deliver?")
    contact = await contact_id(db)
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        sent = await owner.post(
            f"/console/inbox/{NUMBER_A}/{contact}/send", {"body": "Yes, every day."}
        )
        assert sent.status_code == 303, sent.text
        assert sent.headers["location"] == f"/console/inbox/{NUMBER_A}/{contact}"
        assert await wait_sent(meta, 1) == [
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": CUSTOMER,
                "type": "text",
                "text": {"body": "Yes, every day."},
            }
        ]
        row = await db.fetchrow(
            "SELECT id, author, direction, text FROM messages WHERE direction = 'out'"
        )
        assert (row["author"], row["text"]) == ("human", "Yes, every day.")
        # A person answered: the assistant keeps out of the conversation (human takeover).
        paused = await db.fetchrow(
            "SELECT bot_paused, paused_by FROM contacts WHERE id = $1", contact
        )
        assert tuple(paused) == (True, "human")
        await meta.wait_status(str(row["id"]), "read")
        thread = (await owner.get(f"/console/inbox/{NUMBER_A}/{contact}")).text
        bubble = thread[thread.index(f'id="m-{row["id"]}"') :]
        bubble = bubble[: bubble.index("</article>")]
        assert "Yes, every day." in bubble and "Human / API" in bubble
        assert '<span class="ticks read">' in bubble
        assert '<span class="visually-hidden">read</span>' in bubble
        assert "Paused until" in thread and "by a person" in thread


async def test_an_attachment_is_uploaded_sent_and_shown(meta: Meta, db: asyncpg.Connection) -> None:
    await customer_writes(meta, "Send me the menu")
    contact = await contact_id(db)
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        sent = await owner.post(
            f"/console/inbox/{NUMBER_A}/{contact}/send",
            {"body": "Today's menu"},
            files={"file": ("menu.png", PNG, "image/png")},
        )
        assert sent.status_code == 303, sent.text
        [body] = await wait_sent(meta, 1)
        media_id = body["image"]["id"]
        assert body["type"] == "image" and body["image"] == {
            "id": media_id,
            "caption": "Today's menu",
        }
        message = await db.fetchval("SELECT id FROM messages WHERE direction = 'out'")
        shown = await owner.get(f"/console/media/{message}")
        assert shown.status_code == 200
        assert shown.content == PNG
        assert shown.headers["content-type"] == "image/png"
        assert shown.headers["content-disposition"].startswith("inline")
        assert shown.headers["x-content-type-options"] == "nosniff"
        thread = (await owner.get(f"/console/inbox/{NUMBER_A}/{contact}")).text
        assert f'<img src="/console/media/{message}"' in thread
        assert "Today&#39;s menu" in thread


async def test_a_closed_window_offers_templates_and_sends_one(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await customer_writes(meta, "Thanks!")
    contact = await contact_id(db)
    await db.execute(
        "UPDATE contacts SET last_inbound_at = now() - interval '25 hours' WHERE id = $1", contact
    )
    seeded = await meta.sandbox.post(
        "/_sandbox/templates",
        json={
            "waba_id": WABA,
            "name": "order_update",
            "language": "en_US",
            "body": "Hi {{1}}, order {{2}} shipped.",
        },
    )
    assert seeded.status_code == 201, seeded.text
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        thread = await owner.get(f"/console/inbox/{NUMBER_A}/{contact}")
        assert thread.status_code == 200
        assert "Send a template" in thread.text and 'name="body"' not in thread.text
        assert "order_update" in thread.text and "Hi {{1}}, order {{2}} shipped." in thread.text
        assert 'name="body.1"' in thread.text and 'name="body.2"' in thread.text
        # A free-form message now is the API's refusal, on the page.
        refused = await owner.post(f"/console/inbox/{NUMBER_A}/{contact}/send", {"body": "Hello?"})
        assert refused.status_code == 422
        assert "customer-service window with this contact is closed" in refused.text
        assert "order_update" in refused.text
        missing = await owner.post(
            f"/console/inbox/{NUMBER_A}/{contact}/send",
            {"template": "order_update", "language": "en_US", "body.1": "Ana"},
        )
        assert missing.status_code == 422 and "Fill in Body {{2}}" in missing.text
        sent = await owner.post(
            f"/console/inbox/{NUMBER_A}/{contact}/send",
            {"template": "order_update", "language": "en_US", "body.1": "Ana", "body.2": "A-17"},
        )
        assert sent.status_code == 303, sent.text
        thread = await owner.get(f"/console/inbox/{NUMBER_A}/{contact}")
        assert "Template “order_update”: Ana, A-17" in thread.text
        assert "You: Template “order_update”" in thread.text  # the list's preview
    assert await wait_sent(meta, 1) == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": "template",
            "template": {
                "name": "order_update",
                "language": {"code": "en_US"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Ana"},
                            {"type": "text", "text": "A-17"},
                        ],
                    }
                ],
            },
        }
    ]
    assert await db.fetchval("SELECT author FROM messages WHERE type = 'template'") == "human"


async def test_the_panel_pauses_and_resumes_the_assistant_and_edits_the_contact(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await customer_writes(meta, "hi")
    contact = await contact_id(db)
    path = f"/console/inbox/{NUMBER_A}/{contact}"
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        assert '<p class="bot-state">Off for this number.</p>' in (await owner.get(path)).text
        paused = await owner.post(f"{path}/pause", {"minutes": "15"})
        assert paused.status_code == 303, paused.text
        row = await db.fetchrow(
            "SELECT bot_paused, paused_by, paused_until - now() AS left FROM contacts"
            " WHERE id = $1",
            contact,
        )
        assert row["bot_paused"] and row["paused_by"] == "console"
        assert 14 * 60 < row["left"].total_seconds() <= 15 * 60
        panel = await owner.get(f"{path}/panel", headers=FRAGMENT)
        assert "Paused until" in panel.text and "by the console" in panel.text
        assert "Resume the assistant" in panel.text

        bad = await owner.post(f"{path}/pause", {"minutes": "soon"})
        assert bad.status_code == 422 and "&#39;minutes&#39; must be a number" in bad.text
        forever = await owner.post(f"{path}/pause", {"minutes": ""})
        assert forever.status_code == 303
        assert await db.fetchval("SELECT paused_until FROM contacts WHERE id = $1", contact) is None
        assert "Paused until resumed, by the console." in (await owner.get(path)).text
        resumed = await owner.post(f"{path}/resume")
        assert resumed.status_code == 303
        row = await db.fetchrow("SELECT bot_paused, paused_by FROM contacts WHERE id = $1", contact)
        assert tuple(row) == (False, None)

        saved = await owner.post(
            f"{path}/contact",
            {
                "tags": "VIP, new  lead, vip",
                "notes": " Prefers mornings ",
                "fields": "city=Bogotá\nplan = gold\n",
            },
        )
        assert saved.status_code == 303, saved.text
        row = await db.fetchrow("SELECT tags, notes, fields FROM contacts WHERE id = $1", contact)
        assert row["tags"] == ["vip", "new lead"] and row["notes"] == "Prefers mornings"
        fields = row["fields"]
        assert {k: v["value"] for k, v in fields.items()} == {"city": "Bogotá", "plan": "gold"}
        assert fields["city"]["by"] == "api"
        panel = await owner.get(f"{path}/panel", headers=FRAGMENT)
        assert '<li class="badge">new lead</li>' in panel.text
        assert "Prefers mornings" in panel.text and "<dt>city</dt><dd>Bogotá</dd>" in panel.text
        # The form is the whole memory: a field left out is removed.
        again = await owner.post(
            f"{path}/contact", {"tags": "", "notes": "", "fields": "city=Cali"}
        )
        assert again.status_code == 303
        shown = (
            await meta.app.client.get(
                f"/v1/contacts/{CUSTOMER}",
                params={"phone_number_id": NUMBER_A},
                headers=meta.tenant(),
            )
        ).json()
        assert (shown["tags"], shown["notes"]) == ([], None)
        assert {k: v["value"] for k, v in shown["fields"].items()} == {"city": "Cali"}
        refused = await owner.post(f"{path}/contact", {"fields": "City Name=x"})
        assert refused.status_code == 422 and "must be snake_case" in refused.text
        refused = await owner.post(f"{path}/contact", {"fields": "no equals sign"})
        assert refused.status_code == 422 and "line 1: write name=value" in refused.text

        # A deactivated tenant reads its conversations but changes nothing.
        deactivated = await meta.app.client.patch(
            f"/v1/admin/tenants/{meta.tenant_id}", json={"active": False}, headers=meta.app.admin()
        )
        assert deactivated.status_code == 200, deactivated.text
        page = await owner.get(path)
        assert page.status_code == 200 and "can be read, not answered" in page.text
        for action in ("pause", "send"):
            refused = await owner.post(f"{path}/{action}", {"minutes": "5", "body": "hello"})
            assert refused.status_code == 403 and "deactivated" in refused.text
        assert not await db.fetchval("SELECT bot_paused FROM contacts WHERE id = $1", contact)
    assert "Cali" in str(await db.fetchval("SELECT fields FROM contacts WHERE id = $1", contact))
    actions = await db.fetch("SELECT action FROM audit_log ORDER BY id")
    assert [a["action"] for a in actions if a["action"].startswith("contact.")] == [
        "contact.paused",
        "contact.paused",
        "contact.resumed",
        "contact.updated",
        "contact.updated",
    ]


async def test_search_by_name_number_and_words(meta: Meta, db: asyncpg.Connection) -> None:
    await customer_writes(meta, "Do you have gluten free pizza?", name="Ana Lima")
    await customer_writes(meta, "Where are you?", sender="447700900123", name="Bruno Costa")
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)

        async def titles(q: str) -> list[str]:
            page = await owner.get("/console/inbox", params={"number": NUMBER_A, "q": q})
            assert page.status_code == 200, page.text
            return re.findall(r'<span class="conversation-title">([^<]+)</span>', page.text)

        assert await titles("") == ["Bruno Costa", "Ana Lima"]
        assert await titles("ana") == ["Ana Lima"]
        assert await titles("pizza") == ["Ana Lima"]
        assert await titles("where") == ["Bruno Costa"]
        assert await titles("+44 7700") == ["Bruno Costa"]
        assert await titles("100%") == []
        listed = await owner.get(
            f"/console/inbox/{NUMBER_A}/list", params={"q": "gluten"}, headers=FRAGMENT
        )
        assert "Ana Lima" in listed.text and "Bruno Costa" not in listed.text


async def seed_thread(meta: Meta, db: asyncpg.Connection, contact: int) -> dict[str, Any]:
    """A long thread of A's written straight to the database: 120 older inbound messages, then
    an answer of the assistant, a failed send, a voice note with its transcript, a document and
    an image still downloading."""
    tenant = meta.tenant_id
    await db.execute(
        """INSERT INTO messages (tenant_id, phone_number_id, contact_id, direction, type, text,
                                 payload, status, sent_at)
           SELECT $1::uuid, $2, $3, 'in', 'text', 'old message ' || g, '{}', 'received',
                  now() - interval '2 hours' + g * interval '1 second'
             FROM generate_series(1, 120) g""",
        tenant,
        NUMBER_A,
        contact,
    )
    ids: dict[str, Any] = {}
    rows = [
        ("bot", "out", "text", "We open at nine.", None, "read", None, "bot", {}),
        (
            "failed",
            "out",
            "text",
            "Are you still there?",
            None,
            "failed",
            [
                {
                    "code": 131047,
                    "title": "Re-engagement message",
                    "message": "Re-engagement message",
                    "error_data": {"details": "More than 24 hours have passed."},
                }
            ],
            "human",
            {},
        ),
        ("voice", "in", "audio", None, "I would like two pizzas", "received", None, None, {}),
        (
            "document",
            "in",
            "document",
            "invoice.pdf",
            None,
            "received",
            None,
            None,
            {"filename": "invoice.pdf"},
        ),
        ("image", "in", "image", None, None, "received", None, None, {}),
    ]
    for offset, (
        key,
        direction,
        kind,
        text,
        understood,
        status,
        errors,
        author,
        extra,
    ) in enumerate(rows):
        ids[key] = await db.fetchval(
            """INSERT INTO messages (tenant_id, phone_number_id, contact_id, direction, type, text,
                                     media_text, payload, status, errors, author, sent_at)
               VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                       now() - interval '1 minute' * (10 - $12))
               RETURNING id""",
            tenant,
            NUMBER_A,
            contact,
            direction,
            kind,
            text,
            understood,
            {"type": kind, kind: {"id": f"media-{key}", **extra}},
            status,
            errors or [],
            author,
            offset,
        )
    for key, state, mime, content in (
        ("voice", "stored", "audio/ogg", b"OggS-voice"),
        ("document", "stored", "application/pdf", b"%PDF-1.4 invoice"),
        ("image", "pending", "image/jpeg", None),
    ):
        await db.execute(
            # A pending download is not due for an hour: the worker leaves it pending.
            """INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, mime_type,
                                  sha256, size, content, state, run_after)
               VALUES ($1::uuid, $2, $3, $4, $5, 'abc', $6, $7, $8, now() + interval '1 hour')""",
            tenant,
            NUMBER_A,
            f"media-{key}",
            ids[key],
            mime,
            len(content or b""),
            content,
            state,
        )
    await db.execute("UPDATE contacts SET read_at = NULL WHERE id = $1", contact)
    return ids


def bubble_of(page: str, message_id: Any) -> str:
    start = page.index(f'id="m-{message_id}"')
    return page[start : page.index("</article>", start)]


async def test_the_thread_shows_authors_failures_media_and_older_messages(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await customer_writes(meta, "newest words", name="Ana Lima")
    contact = await contact_id(db)
    ids = await seed_thread(meta, db, contact)
    path = f"/console/inbox/{NUMBER_A}/{contact}"
    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        assert unread_of((await owner.get("/console/inbox")).text, "Ana Lima") == "99+"
        page = (await owner.get(path)).text
        assert page.count('<article class="bubble') == 60
        # The latest 60: the customer's last words, the five above and old messages 67 to 120.
        assert "newest words" in page and "old message 67<" in page
        assert "old message 66<" not in page
        bot = bubble_of(page, ids["bot"])
        assert "Assistant" in bot and '<span class="ticks read">' in bot
        failed = bubble_of(page, ids["failed"])
        assert '<span class="ticks failed">' in failed
        assert "Not delivered: More than 24 hours have passed. (131047)" in failed
        voice = bubble_of(page, ids["voice"])
        assert f'<audio controls preload="none" src="/console/media/{ids["voice"]}">' in voice
        assert "I would like two pizzas" in voice
        document = bubble_of(page, ids["document"])
        assert f'href="/console/media/{ids["document"]}" download>' in document
        assert "invoice.pdf" in document
        assert "still being downloaded" in bubble_of(page, ids["image"])

        older = re.search(r'<a href="([^"]+)">Older messages</a>', page)
        assert older
        previous = (await owner.get(older.group(1).replace("&amp;", "&"))).text
        assert "old message 66<" in previous and "old message 7<" in previous
        assert "old message 6<" not in previous and "Older messages" in previous
        assert '<p class="text">newest words</p>' not in previous
        assert "Latest messages" in previous

        audio = await owner.get(f"/console/media/{ids['voice']}")
        assert audio.content == b"OggS-voice" and audio.headers["content-type"] == "audio/ogg"
        assert audio.headers["content-disposition"] == "inline"
        pdf = await owner.get(f"/console/media/{ids['document']}")
        assert pdf.headers["content-disposition"] == "attachment; filename*=UTF-8''invoice.pdf"
        assert pdf.headers["x-content-type-options"] == "nosniff"
        # Not downloaded yet, or cleared by retention: nothing to serve.
        assert (await owner.get(f"/console/media/{ids['image']}")).status_code == 404
        await db.execute("UPDATE messages SET purged_at = now() WHERE id = $1", ids["document"])
        assert (await owner.get(f"/console/media/{ids['document']}")).status_code == 404


async def test_another_tenants_ids_are_not_found_and_forms_need_the_csrf_token(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await customer_writes(meta, "private words", name="Ana Lima")
    contact = await contact_id(db)
    message = await db.fetchval("SELECT id FROM messages WHERE contact_id = $1", contact)
    await db.execute(
        """INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, mime_type,
                              sha256, size, content, state)
           VALUES ($1::uuid, $2, 'm1', $3, 'image/png', 'abc', 3, 'png', 'stored')""",
        meta.tenant_id,
        NUMBER_A,
        message,
    )
    other = await meta.app.create_tenant("Intruder Co")
    added = await meta.app.add_number(other["api_key"], "106540352249999", "102290129349999")
    assert added.status_code == 201, added.text

    async def snapshot() -> list[Any]:
        return [
            await db.fetch("SELECT * FROM contacts ORDER BY id"),
            await db.fetchval("SELECT count(*) FROM messages"),
            await db.fetchval("SELECT count(*) FROM audit_log"),
            len(await meta.sent_bodies()),
            (
                await meta.sandbox.get("/_sandbox/requests", params={"path_contains": "/media"})
            ).json()["data"],
        ]

    before = await snapshot()
    forms = {
        "send": {"body": "intrusion"},
        "pause": {"minutes": "10"},
        "resume": {},
        "contact": {"tags": "owned", "notes": "x", "fields": "a=b"},
    }
    async with ConsoleUser(meta.app.base_url) as intruder:
        await intruder.sign_in(other["api_key"])
        own = await intruder.get("/console/inbox")
        assert own.status_code == 200 and "106540352249999" in own.text
        assert "Ana Lima" not in own.text and NUMBER_A not in own.text
        for number in (NUMBER_A, "106540352249999"):
            thread = f"/console/inbox/{number}/{contact}"
            for path in (thread, f"{thread}/messages", f"{thread}/panel"):
                assert (await intruder.get(path)).status_code == 404, path
            for action, form in forms.items():
                refused = await intruder.post(f"{thread}/{action}", form)
                assert refused.status_code == 404, (action, refused.status_code)
                assert "private words" not in refused.text
            upload = await intruder.post(
                f"{thread}/send", {"body": "x"}, files={"file": ("a.png", PNG, "image/png")}
            )
            assert upload.status_code == 404
        assert (await intruder.get(f"/console/inbox?number={NUMBER_A}")).status_code == 404
        assert (await intruder.get(f"/console/inbox/{NUMBER_A}/list")).status_code == 404
        assert (await intruder.get(f"/console/media/{message}")).status_code == 404
        assert (await intruder.get("/console/media/not-a-uuid")).status_code == 404
        assert (await intruder.get(f"/console/inbox/{NUMBER_A}/x{contact}")).status_code == 404

    async with ConsoleUser(meta.app.base_url) as owner:
        await owner.sign_in(meta.api_key)
        assert (await owner.get(f"/console/media/{message}")).content == b"png"
        thread = f"/console/inbox/{NUMBER_A}/{contact}"
        for action, form in forms.items():
            forged = await owner.client.post(f"{thread}/{action}", data={"csrf": "forged", **form})
            assert forged.status_code == 403, action
            other_site = await owner.post(
                f"{thread}/{action}", form, headers={"origin": "https://attacker.example"}
            )
            assert other_site.status_code == 403, action
        multipart = await owner.client.post(
            f"{thread}/send", data={"body": "x"}, files={"file": ("a.png", PNG, "image/png")}
        )
        assert multipart.status_code == 403
        # Reading the thread is what marks it read; put that back before comparing.
        await db.execute("UPDATE contacts SET read_at = NULL WHERE id = $1", contact)
    assert await snapshot() == before
