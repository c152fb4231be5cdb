"""Sending through the outbox against the sandbox Meta on loopback."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Meta
from wa_cloud.db import channels

CUSTOMER = "16505551234"

SENDS: list[tuple[str, dict[str, Any]]] = [
    ("text", {"body": "Your order has shipped 📦", "preview_url": False}),
    ("image", {"link": "https://example.com/a.jpg", "caption": "Receipt"}),
    ("audio", {"link": "https://example.com/note.ogg"}),
    ("video", {"link": "https://example.com/v.mp4", "caption": "How to"}),
    (
        "document",
        {"link": "https://example.com/i.pdf", "filename": "invoice.pdf", "caption": "Invoice"},
    ),
    ("sticker", {"link": "https://example.com/s.webp"}),
    (
        "location",
        {
            "latitude": 52.52,
            "longitude": 13.405,
            "name": "Office",
            "address": "Alexanderplatz 1, Berlin",
        },
    ),
    (
        "contacts",
        [
            {
                "name": {"formatted_name": "Ana Lima", "first_name": "Ana"},
                "phones": [{"phone": "+5511987654321", "type": "CELL", "wa_id": "5511987654321"}],
            }
        ],
    ),
    (
        "interactive",
        {
            "type": "button",
            "body": {"text": "Confirm your booking?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "no", "title": "No"}},
                ]
            },
        },
    ),
    (
        "interactive",
        {
            "type": "list",
            "body": {"text": "Pick a slot"},
            "action": {
                "button": "Slots",
                "sections": [
                    {
                        "title": "Today",
                        "rows": [
                            {"id": "t1", "title": "10:00", "description": "Morning"},
                            {"id": "t2", "title": "15:00"},
                        ],
                    }
                ],
            },
        },
    ),
    (
        "interactive",
        {
            "type": "cta_url",
            "body": {"text": "Track it"},
            "action": {
                "name": "cta_url",
                "parameters": {"display_text": "Track", "url": "https://example.com/t"},
            },
        },
    ),
]


@pytest.mark.parametrize(
    ("kind", "content"), SENDS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(SENDS)]
)
async def test_each_send_type_reaches_meta_exactly(meta: Meta, kind: str, content: Any) -> None:
    await meta.customer_writes()
    response = await meta.send(to=CUSTOMER, type=kind, **{kind: content})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    message = await meta.wait_status(response.json()["id"], "read", "failed")
    assert message["status"] == "read", message["errors"]
    assert message["wamid"].startswith("wamid.")
    assert await meta.sent_bodies() == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": kind,
            kind: content,
        }
    ]


async def test_a_queued_send_is_announced_to_the_sender_once_committed(
    meta: Meta, db: asyncpg.Connection
) -> None:
    await meta.customer_writes()
    heard: asyncio.Queue[str] = asyncio.Queue()
    await db.add_listener(channels.OUTBOX, lambda *args: heard.put_nowait(args[3]))
    response = await meta.send(to=CUSTOMER, type="text", text={"body": "hi"})
    assert response.status_code == 202, response.text
    await asyncio.wait_for(heard.get(), 5)
    # Heard after the commit: the row is there for whoever the NOTIFY woke.
    assert await db.fetchval(
        "SELECT count(*) FROM messages WHERE id = $1", uuid.UUID(response.json()["id"])
    )


async def test_statuses_from_meta_move_the_message_to_read(meta: Meta) -> None:
    inbound = await meta.customer_writes("where is my order?")
    response = await meta.send(
        to=CUSTOMER, type="text", text={"body": "On its way"}, context={"message_id": inbound}
    )
    message = await meta.wait_status(response.json()["id"], "read")
    assert message["errors"] == []
    assert message["from"] == NUMBER_A and message["to"] == CUSTOMER
    body = (await meta.sent_bodies())[0]
    assert body["context"] == {"message_id": inbound}


async def test_closed_window_is_refused_before_meta(meta: Meta) -> None:
    response = await meta.send(to=CUSTOMER, type="text", text={"body": "hello?"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "outside_customer_service_window"
    assert await meta.sent_bodies() == []


async def _seed_template(
    meta: Meta, name: str = "order_update", body: str = "Hi {{1}}, order {{2}} shipped."
) -> None:
    seeded = await meta.sandbox.post(
        "/_sandbox/templates",
        json={"waba_id": WABA, "name": name, "language": "en_US", "body": body},
    )
    assert seeded.status_code == 201, seeded.text


TEMPLATE = {
    "name": "order_update",
    "language": {"code": "en_US"},
    "components": [
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "A-17"}],
        }
    ],
}


async def test_closed_window_sends_the_fallback_template(meta: Meta) -> None:
    await _seed_template(meta)
    response = await meta.send(
        to=CUSTOMER, type="text", text={"body": "hello?"}, fallback_template=TEMPLATE
    )
    assert response.status_code == 202, response.text
    message = await meta.wait_status(response.json()["id"], "read")
    assert message["used_fallback_template"] is True
    assert await meta.sent_bodies() == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": "template",
            "template": TEMPLATE,
        }
    ]


async def test_template_goes_without_a_window(meta: Meta) -> None:
    await _seed_template(meta)
    response = await meta.send(to=CUSTOMER, type="template", template=TEMPLATE)
    assert response.status_code == 202, response.text
    await meta.wait_status(response.json()["id"], "read")


@pytest.mark.parametrize(
    ("parameters", "code"),
    [
        ([{"type": "text", "text": "Ana"}], "template_parameter_mismatch"),
        ([{"type": "text", "text": "a"}] * 3, "template_parameter_mismatch"),
    ],
)
async def test_template_parameter_mismatch_is_refused_locally(
    meta: Meta, parameters: list[dict[str, str]], code: str
) -> None:
    await _seed_template(meta)
    template = {**TEMPLATE, "components": [{"type": "body", "parameters": parameters}]}
    response = await meta.send(to=CUSTOMER, type="template", template=template)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert await meta.sent_bodies() == []


async def test_unknown_template_is_refused_locally(meta: Meta) -> None:
    response = await meta.send(
        to=CUSTOMER,
        type="template",
        template={"name": "no_such", "language": {"code": "en_US"}},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "template_not_found"


async def test_meta_131047_closes_the_window_locally(meta: Meta) -> None:
    # We saw the customer write (so our window is open) but Meta has no record of it.
    from tests.conftest import corpus

    await meta.app.post_webhook(
        corpus("messages/text.json").replace(b'"timestamp": "', b'"timestamp": "9', 0)
    )
    from wa_cloud.sandbox.corpus import text_message

    await meta.app.post_webhook(text_message(NUMBER_A, CUSTOMER, "hi from a parallel world"))
    async with asyncio.timeout(10):
        while True:
            contacts = await meta.app.client.get(
                "/v1/contacts", params={"phone_number_id": NUMBER_A}, headers=meta.tenant()
            )
            if contacts.json()["data"] and contacts.json()["data"][0]["window_open"]:
                break
            await asyncio.sleep(0.05)
    response = await meta.send(to=CUSTOMER, type="text", text={"body": "hello"})
    assert response.status_code == 202
    message = await meta.wait_status(response.json()["id"], "failed")
    assert message["errors"][0]["code"] == 131047
    contacts = await meta.app.client.get(
        "/v1/contacts", params={"phone_number_id": NUMBER_A}, headers=meta.tenant()
    )
    assert contacts.json()["data"][0]["window_open"] is False
    again = await meta.send(to=CUSTOMER, type="text", text={"body": "hello?"})
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "outside_customer_service_window"


async def test_idempotency_key_returns_the_first_message(meta: Meta) -> None:
    await meta.customer_writes()
    request = {
        "to": CUSTOMER,
        "type": "text",
        "text": {"body": "once"},
        "idempotency_key": "order-17-shipped",
    }
    first, second = await asyncio.gather(meta.send(**request), meta.send(**request))
    ids = {first.json()["id"], second.json()["id"]}
    assert len(ids) == 1
    assert sorted([first.status_code, second.status_code]) in ([200, 202], [202, 202])
    await meta.wait_status(first.json()["id"], "read")
    third = await meta.send(**request)
    assert (third.status_code, third.json()["id"]) == (200, first.json()["id"])
    assert len(await meta.sent_bodies()) == 1


async def test_cannot_send_from_another_tenants_number(meta: Meta) -> None:
    other = await meta.app.create_tenant("Other")
    added = await meta.app.add_number(other["api_key"], NUMBER_B, waba_id="102290129349999")
    assert added.status_code == 201, added.text
    response = await meta.send(to=CUSTOMER, type="text", text={"body": "x"})
    assert response.status_code == 422  # ours, but closed window
    stolen = await meta.app.client.post(
        "/v1/messages",
        json={"from": NUMBER_A, "to": CUSTOMER, "type": "template", "template": TEMPLATE},
        headers={"authorization": f"Bearer {other['api_key']}"},
    )
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == "not_found"
    sent = await meta.send(to=CUSTOMER, type="template", template=TEMPLATE)
    peek = await meta.app.client.get(
        f"/v1/messages/{sent.json().get('id', '00000000-0000-0000-0000-000000000000')}",
        headers={"authorization": f"Bearer {other['api_key']}"},
    )
    assert peek.status_code == 404


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"type": "text", "text": {"body": ""}}, "invalid_message"),
        ({"type": "text", "text": {"body": "x" * 4097}}, "text_too_long"),
        ({"type": "image", "image": {"id": "1", "link": "https://e.com/a.jpg"}}, "invalid_message"),
        ({"type": "sticker", "sticker": {"id": "1", "caption": "no"}}, "invalid_message"),
        ({"type": "poll", "poll": {}}, "invalid_type"),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "?"},
                    "action": {
                        "buttons": [
                            {"type": "reply", "reply": {"id": str(i), "title": str(i)}}
                            for i in range(4)
                        ]
                    },
                },
            },
            "invalid_message",
        ),
        ({"type": "location", "location": {"latitude": 91, "longitude": 0}}, "invalid_message"),
    ],
)
async def test_bad_sends_are_refused_with_a_clear_422(
    meta: Meta, request_: dict[str, Any], code: str
) -> None:
    await meta.customer_writes()
    response = await meta.send(to=CUSTOMER, **request_)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert await meta.sent_bodies() == []


async def test_template_status_webhook_refreshes_the_cached_template(meta: Meta) -> None:
    await _seed_template(meta)
    first = await meta.send(to=CUSTOMER, type="template", template=TEMPLATE)
    assert first.status_code == 202, first.text  # fetched and cached: two parameters
    await _seed_template(meta, body="Hi {{1}}, order {{2}} ships on {{3}}.")
    three = {
        **TEMPLATE,
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": t} for t in "abc"]}
        ],
    }
    stale = await meta.send(to=CUSTOMER, type="template", template=three)
    assert stale.status_code == 422  # still the cached copy
    update = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "time": 1763700000,
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": "APPROVED",
                            "message_template_id": 1,
                            "message_template_name": "order_update",
                            "message_template_language": "en_US",
                            "reason": "NONE",
                        },
                    }
                ],
            }
        ],
    }
    import json

    assert (await meta.app.post_webhook(json.dumps(update).encode())).status_code == 200
    async with asyncio.timeout(10):
        while True:
            fresh = await meta.send(to=CUSTOMER, type="template", template=three)
            if fresh.status_code == 202:
                break
            await asyncio.sleep(0.05)
    await meta.wait_status(fresh.json()["id"], "read")
