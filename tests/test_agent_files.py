"""The files library and the assistant's built-in `send_file`, end to end: files added through
the API (multipart or a URL through the URL guard), offered to the model (the sandbox's OpenAI
fake, scripted to call `send_file`, through the real `openai` SDK), uploaded to the sandbox Meta
once and sent as the right media message through the outbox.

What is asserted: the API's shapes and machine codes, tenant isolation, the exact tool the
model was offered, the uploads and sends Meta received (one upload per file while its media id
is fresh), and the results the model read back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import (
    NUMBER_A,
    NUMBER_B,
    Meta,
    configure_bot,
    give_credits,
    meta_running,
    model_requests,
    replies_done,
    sent_to_customer,
    serve_asgi,
)
from wa_cloud.config import Settings

CUSTOMER = "16505551234"
PDF = b"%PDF-1.4\n% a menu\n" + bytes(range(256)) * 8
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) * 4
GIF = b"GIF89a" + bytes(100)


def files_path(number: str = NUMBER_A) -> str:
    return f"/v1/numbers/{number}/files"


async def add_file(
    meta: Meta,
    content: bytes,
    mime_type: str | None,
    title: str,
    *,
    filename: str = "upload.bin",
    number: str = NUMBER_A,
    headers: Mapping[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    part: tuple[str, bytes] | tuple[str, bytes, str] = (
        (filename, content) if mime_type is None else (filename, content, mime_type)
    )
    return await meta.app.client.post(
        files_path(number),
        files={"file": part},
        data={"title": title, **fields},
        headers=dict(headers or meta.tenant()),
    )


async def listed(meta: Meta) -> list[dict[str, Any]]:
    response = await meta.app.client.get(files_path(), headers=meta.tenant())
    assert response.status_code == 200, response.text
    assert response.json()["next"] is None
    return list(response.json()["data"])


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def script(meta: Meta, *replies: Any) -> None:
    response = await meta.sandbox.post("/_models/script", json={"replies": list(replies)})
    assert response.status_code in (200, 201), response.text


def send_file(title: Any) -> dict[str, Any]:
    return {"name": "send_file", "arguments": {"title": title}}


async def uploads_seen(meta: Meta) -> list[dict[str, Any]]:
    response = await meta.sandbox.get("/_sandbox/requests", params={"path_contains": "/media"})
    return [r for r in response.json()["data"] if r["method"] == "POST"]


async def tool_calls(meta: Meta) -> list[dict[str, Any]]:
    response = await meta.app.client.get(
        f"/v1/numbers/{NUMBER_A}/tool-calls", headers=meta.tenant()
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


@pytest.fixture
async def file_server() -> AsyncIterator[str]:
    async def serve_file(request: Request) -> Response:
        if request.path_params["name"] == "menu.pdf":
            return Response(PDF, media_type="application/pdf")
        return Response(b"gone", status_code=404)

    async with serve_asgi(Starlette(routes=[Route("/{name}", serve_file)])) as url:
        yield url


# The library through the API ------------------------------------------------------------------
async def test_files_are_added_listed_and_deleted_with_machine_codes(
    bot: Meta, file_server: str
) -> None:
    added = await add_file(
        bot, PDF, "application/pdf", "Menu", filename="menu.pdf", description="Our  menu,\nall"
    )
    assert added.status_code == 201, added.text
    menu = added.json()
    assert menu == {
        "id": menu["id"],
        "title": "Menu",
        "description": "Our menu, all",  # one line: it is a line of the model's tool description
        "type": "document",
        "mime_type": "application/pdf",
        "filename": "menu.pdf",
        "size": len(PDF),
        "sha256": hashlib.sha256(PDF).hexdigest(),
        "created_at": menu["created_at"],
    }
    # The type is what the bytes are (declared or not), unless given.
    photo = await add_file(bot, JPEG, None, "Photo", filename="../../shop.jpg")
    assert photo.status_code == 201, photo.text
    assert (photo.json()["type"], photo.json()["mime_type"]) == ("image", "image/jpeg")
    assert photo.json()["filename"] == "shop.jpg"
    as_document = await add_file(bot, JPEG, "image/jpeg", "Photo HD", type="document")
    assert as_document.status_code == 201 and as_document.json()["type"] == "document"
    by_url = await bot.app.client.post(
        files_path(),
        json={"url": f"{file_server}/menu.pdf", "title": "Menu (web)"},
        headers=bot.tenant(),
    )
    assert by_url.status_code == 201, by_url.text
    assert (by_url.json()["filename"], by_url.json()["size"]) == ("menu.pdf", len(PDF))

    refusals: list[tuple[httpx.Response, int, str]] = [
        (await add_file(bot, PDF, "application/pdf", "MENU"), 409, "title_taken"),
        (await add_file(bot, PDF, "application/pdf", "Two\nlines"), 422, "invalid_field"),
        (await add_file(bot, PDF, "application/pdf", "x" * 101), 422, "invalid_field"),
        (await add_file(bot, GIF, "image/gif", "Gif", type="image"), 422, "unsupported_media_type"),
        (
            await add_file(bot, JPEG, "image/jpeg", "S", type="sticker"),
            422,
            "unsupported_media_type",
        ),
        (await add_file(bot, b"", "application/pdf", "Empty"), 422, "unsupported_media_type"),
        (await add_file(bot, JPEG, "image/jpeg", "X", number="999999999"), 404, "not_found"),
        (
            await bot.app.client.post(
                files_path(),
                files={"file": ("a.pdf", PDF, "application/pdf")},
                headers=bot.tenant(),
            ),
            422,
            "missing_field",
        ),
        (
            await bot.app.client.post(
                files_path(),
                json={"url": f"{file_server}/missing.pdf", "title": "Gone"},
                headers=bot.tenant(),
            ),
            422,
            "media_download_failed",
        ),
        (
            await bot.app.client.post(
                files_path(), json={"url": file_server, "title": "T", "x": 1}, headers=bot.tenant()
            ),
            422,
            "unknown_field",
        ),
    ]
    for response, status, code in refusals:
        assert (response.status_code, error_code(response)) == (status, code), response.text

    titles = [f["title"] for f in await listed(bot)]
    assert titles == ["Menu", "Photo", "Photo HD", "Menu (web)"]
    assert all("content" not in f for f in await listed(bot))

    gone = await bot.app.client.delete(f"{files_path()}/{menu['id']}", headers=bot.tenant())
    assert gone.status_code == 204 and gone.content == b""
    again = await bot.app.client.delete(f"{files_path()}/{menu['id']}", headers=bot.tenant())
    assert (again.status_code, error_code(again)) == (404, "not_found")
    malformed = await bot.app.client.delete(f"{files_path()}/not-a-uuid", headers=bot.tenant())
    assert malformed.status_code == 404
    assert [f["title"] for f in await listed(bot)] == ["Photo", "Photo HD", "Menu (web)"]
    # Its title is free again.
    assert (await add_file(bot, PDF, "application/pdf", "menu")).status_code == 201


async def test_a_second_tenant_gets_404_for_the_first_ones_number_and_files(bot: Meta) -> None:
    menu = (await add_file(bot, PDF, "application/pdf", "Menu", filename="menu.pdf")).json()
    other = await bot.app.create_tenant("Other Co")
    added = await bot.app.add_number(other["api_key"], NUMBER_B, waba_id="102290129340399")
    assert added.status_code == 201, added.text
    theirs = {"authorization": f"Bearer {other['api_key']}"}
    client = bot.app.client

    responses = [
        await client.get(files_path(), headers=theirs),
        await add_file(bot, JPEG, "image/jpeg", "Mine", headers=theirs),
        await client.delete(f"{files_path()}/{menu['id']}", headers=theirs),
        # Their own number, the first tenant's file id.
        await client.delete(f"{files_path(NUMBER_B)}/{menu['id']}", headers=theirs),
    ]
    for response in responses:
        assert (response.status_code, error_code(response)) == (404, "not_found"), response.text
        assert "Menu" not in response.text and menu["id"] not in response.text
    own = await client.get(files_path(NUMBER_B), headers=theirs)
    assert own.status_code == 200 and own.json()["data"] == []
    assert [f["id"] for f in await listed(bot)] == [menu["id"]]


async def test_a_url_on_a_private_address_is_refused(
    settings: Settings, db: asyncpg.Connection, file_server: str
) -> None:
    guarded = replace(settings, allow_private_urls=False)
    async with meta_running(guarded) as meta:
        response = await meta.app.client.post(
            files_path(),
            json={"url": f"{file_server}/menu.pdf", "title": "Menu"},
            headers=meta.tenant(),
        )
        assert (response.status_code, error_code(response)) == (422, "url_not_allowed")
        assert await db.fetchval("SELECT count(*) FROM bot_files") == 0


# send_file ----------------------------------------------------------------------------------
async def test_send_file_uploads_once_sends_the_right_type_and_reuses_the_media_id(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await give_credits(db, bot)
    menu = (
        await add_file(
            bot, PDF, "application/pdf", "Menu", filename="menu.pdf", description="Dishes, prices"
        )
    ).json()
    photo = (await add_file(bot, JPEG, "image/jpeg", "Shop photo")).json()
    await configure_bot(bot, model="gpt-4.1-mini")  # no HTTP tools: send_file comes alone
    await script(
        bot,
        {"tool_calls": [send_file("Menu"), send_file("menu")]},  # the same file, twice
        "Here is our menu.",
    )
    await bot.customer_writes("menu please", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 2)
    await replies_done(db, 1)

    [upload] = await uploads_seen(bot)
    assert upload["path"].endswith(f"/{NUMBER_A}/media")
    assert upload["body"]["type"] == "application/pdf"
    assert upload["body"]["file"]["size"] == len(PDF)
    media_id = await db.fetchval("SELECT media_id FROM bot_files WHERE id = $1", UUID(menu["id"]))
    assert media_id
    assert [b["type"] for b in sent] == ["document", "text"]
    assert sent[0]["document"] == {"id": media_id, "filename": "menu.pdf"}
    assert sent[1]["text"] == {"body": "Here is our menu."}

    chat = await model_requests(bot, "chat")
    [tool] = chat[0]["body"]["tools"]
    assert tool["function"]["name"] == "send_file"
    assert tool["function"]["parameters"] == {
        "type": "object",
        "properties": {
            "title": {
                "type": "string",
                "enum": ["Menu", "Shop photo"],
                "description": "The title of the file to send.",
            }
        },
        "required": ["title"],
        "additionalProperties": False,
    }
    assert '"Menu" (document, menu.pdf): Dishes, prices' in tool["function"]["description"]
    assert '"Shop photo" (image)' in tool["function"]["description"]
    results = [json.loads(m["content"]) for m in chat[1]["body"]["messages"] if m["role"] == "tool"]
    assert [(r["queued"], r["type"]) for r in results] == [(True, "document"), (True, "document")]
    assert "already queued" in results[1]["note"]
    logged = await tool_calls(bot)
    assert [(c["tool"], c["arguments"], c["error"]) for c in logged] == [
        ("send_file", {"title": "menu"}, None),
        ("send_file", {"title": "Menu"}, None),
    ]

    # A later reply: the menu's media id is reused (no second upload), the photo goes as an
    # image (no filename).
    await script(bot, {"tool_calls": [send_file("Shop photo"), send_file("Menu")]}, "Both.")
    await bot.customer_writes("and the shop?", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 5)
    await replies_done(db, 2)
    assert [b["type"] for b in sent[2:]] == ["image", "document", "text"]
    photo_id = await db.fetchval("SELECT media_id FROM bot_files WHERE id = $1", UUID(photo["id"]))
    assert sent[2]["image"] == {"id": photo_id}
    assert sent[3]["document"] == {"id": media_id, "filename": "menu.pdf"}
    uploads = await uploads_seen(bot)
    assert [u["body"]["type"] for u in uploads] == ["application/pdf", "image/jpeg"]


async def test_send_file_through_the_responses_api(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await add_file(bot, JPEG, "image/jpeg", "Shop photo")
    await configure_bot(bot, model="o4-mini", reasoning_effort="low")
    await script(bot, {"tool_calls": [send_file("Shop photo")]}, "Our shop.")
    await bot.customer_writes("where are you?", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 2)
    assert [b["type"] for b in sent] == ["image", "text"]
    responses = await model_requests(bot, "responses")
    assert [t["name"] for t in responses[0]["body"]["tools"]] == ["send_file"]
    output = responses[1]["body"]["input"][-1]
    assert output["type"] == "function_call_output"
    assert json.loads(output["output"])["queued"] is True


async def test_an_expired_media_id_is_uploaded_again(bot: Meta, db: asyncpg.Connection) -> None:
    await give_credits(db, bot)
    await add_file(bot, PDF, "application/pdf", "Menu", filename="menu.pdf")
    await configure_bot(bot, model="gpt-4.1-mini")
    await script(bot, {"tool_calls": [send_file("Menu")]}, "Menu.")
    await bot.customer_writes("menu", sender=CUSTOMER)
    first = (await sent_to_customer(bot, 2))[0]["document"]["id"]
    await replies_done(db, 1)
    # Meta keeps media 30 days: an id 26 days old is not trusted to still be there.
    await db.execute("UPDATE bot_files SET uploaded_at = now() - interval '26 days'")

    await script(bot, {"tool_calls": [send_file("Menu")]}, "Menu again.")
    await bot.customer_writes("menu again", sender=CUSTOMER)
    second = (await sent_to_customer(bot, 4))[2]["document"]["id"]
    await replies_done(db, 2)
    assert len(await uploads_seen(bot)) == 2
    assert second != first
    row = await db.fetchrow(
        "SELECT media_id, uploaded_at > now() - interval '1 minute' AS fresh FROM bot_files"
    )
    assert row["media_id"] == second and row["fresh"]


async def test_an_unknown_title_is_an_error_the_model_reads(
    bot: Meta, db: asyncpg.Connection
) -> None:
    await give_credits(db, bot)
    await add_file(bot, PDF, "application/pdf", "Menu", filename="menu.pdf")
    await configure_bot(bot, model="gpt-4.1-mini")
    await script(
        bot,
        {"tool_calls": [send_file("Wine list"), {"name": "send_file", "arguments": "not json"}]},
        "{{tool_output}}",
    )
    await bot.customer_writes("wine?", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 1)
    await replies_done(db, 1)
    assert [b["type"] for b in sent] == ["text"]  # nothing but the answer
    assert await uploads_seen(bot) == []

    chat = await model_requests(bot, "chat")
    results = [json.loads(m["content"]) for m in chat[1]["body"]["messages"] if m["role"] == "tool"]
    assert results == [
        {"error": 'there is no file titled "Wine list"; the files are: "Menu"'},
        {"error": "the arguments were not a JSON object"},
    ]
    logged = await tool_calls(bot)
    assert {c["error"] for c in logged} == {r["error"] for r in results}


async def test_a_failed_upload_is_an_error_result_and_queues_nothing(
    bot: Meta, db: asyncpg.Connection
) -> None:
    """Meta refuses the upload (a fault of the sandbox's Graph API, over HTTP): the model hears
    it, nothing but its answer goes, and the next time the file is asked for it is tried again."""
    await give_credits(db, bot)
    await add_file(bot, PDF, "application/pdf", "Menu", filename="menu.pdf")
    await configure_bot(bot, model="gpt-4.1-mini")
    fault = await bot.sandbox.post(
        "/_sandbox/faults", json={"on": "media", "code": 131053, "times": 1}
    )
    assert fault.status_code == 201, fault.text
    await script(
        bot,
        {"tool_calls": [send_file("Menu")]},
        "{{tool_output}}",
        {"tool_calls": [send_file("Menu")]},
        "Here it is.",
    )
    await bot.customer_writes("menu?", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 1)
    await replies_done(db, 1)
    assert [b["type"] for b in sent] == ["text"]
    assert len(await uploads_seen(bot)) == 1
    assert await db.fetchval("SELECT media_id FROM bot_files") is None
    chat = await model_requests(bot, "chat")
    results = [json.loads(m["content"]) for m in chat[1]["body"]["messages"] if m["role"] == "tool"]
    assert results == [{"error": "the file could not be uploaded to WhatsApp"}]

    await bot.customer_writes("menu, please", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 3)
    await replies_done(db, 2)
    assert [b["type"] for b in sent[1:]] == ["document", "text"]
    assert len(await uploads_seen(bot)) == 2
    media_id = await db.fetchval("SELECT media_id FROM bot_files")
    assert media_id and sent[1]["document"] == {"id": media_id, "filename": "menu.pdf"}
