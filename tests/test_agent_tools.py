"""The assistant's HTTP tools end to end: the model (the sandbox's OpenAI fake, scripted to call
tools, through the real `openai` SDK) calls a tenant's own service on loopback, through the URL
guard; the result goes back to the model and into the reply Meta receives.

What is asserted: the exact request the tenant's service got (path, query, headers, the body
template's escaping), the exact tools and results the model got, the reply, the call log (and
that a header's value is never shown or stored in the clear).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import (
    NUMBER_A,
    Meta,
    configure_bot,
    give_credits,
    meta_running,
    model_requests,
    replies_done,
    sent_to_customer,
    serve_asgi,
)
from wa_cloud.ai.tools import MAX_ROUNDS
from wa_cloud.config import Settings

CUSTOMER = "16505551234"
SECRET = "Bearer shop-secret-7f3a"


@dataclass
class Shop:
    """A business's own order service: what it was asked, as it arrived."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    seen: list[dict[str, Any]] = []

    async def record(request: Request) -> dict[str, Any]:
        entry = {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "headers": dict(request.headers),
            "body": (await request.body()).decode(),
        }
        seen.append(entry)
        return entry

    async def order(request: Request) -> Response:
        await record(request)
        return JSONResponse({"order": request.path_params["order_id"], "status": "shipped"})

    async def broken(request: Request) -> Response:
        await record(request)
        return JSONResponse({"detail": "stock service down"}, status_code=500)

    async def slow(request: Request) -> Response:
        await record(request)
        await asyncio.sleep(3)
        return JSONResponse({"late": True})

    app = Starlette(
        routes=[
            Route("/orders/{order_id:path}/status", order, methods=["GET", "POST"]),
            Route("/stock", broken, methods=["GET"]),
            Route("/slow", slow, methods=["GET"]),
        ]
    )
    async with serve_asgi(app) as url:
        yield Shop(url, seen)


def order_tool(shop: Shop, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "order_status",
        "description": "The status of an order by its id.",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "note": {"type": "string"},
                "qty": {"type": "integer"},
                "ref": {"type": "string"},
            },
            "required": ["order_id"],
        },
        "method": "POST",
        "url": shop.url + "/orders/{{order_id}}/status?ref={{ref}}",
        "headers": {"Authorization": SECRET},
        "body": '{"order": "{{order_id}}", "note": "{{note}}", "qty": {{qty}}}',
        "timeout_seconds": 5,
        **overrides,
    }


async def script(meta: Meta, *replies: Any) -> None:
    response = await meta.sandbox.post("/_models/script", json={"replies": list(replies)})
    assert response.status_code in (200, 201), response.text


async def tool_calls(meta: Meta) -> list[dict[str, Any]]:
    response = await meta.app.client.get(
        f"/v1/numbers/{NUMBER_A}/tool-calls", headers=meta.tenant()
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def test_a_tool_round_trip_escapes_its_arguments_and_the_reply_uses_the_result(
    bot: Meta, db: asyncpg.Connection, shop: Shop
) -> None:
    await give_credits(db, bot)
    shown = await configure_bot(bot, model="gpt-4.1-mini", tools=[order_tool(shop)])
    assert shown["tools"][0]["headers"] == {"Authorization": None}
    arguments = {"order_id": "A 17/x", "note": 'say "hi"\n\\', "qty": 2, "ref": "r&1=2"}
    await script(
        bot,
        {"tool_calls": [{"name": "order_status", "arguments": arguments}]},
        "Your order: {{tool_output}}",
    )
    await bot.customer_writes("where is my order A 17/x?", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 1)

    assert len(shop.requests) == 1
    call = shop.requests[0]
    assert call["method"] == "POST"
    assert call["raw_path"] == "/orders/A%2017%2Fx/status"
    assert call["query"] == "ref=r%261%3D2"
    assert call["headers"]["authorization"] == SECRET
    assert call["headers"]["content-type"] == "application/json"
    assert json.loads(call["body"]) == {"order": "A 17/x", "note": 'say "hi"\n\\', "qty": 2}

    result = {"status": 200, "body": json.dumps({"order": "A 17/x", "status": "shipped"})}
    result["body"] = result["body"].replace(", ", ",").replace(": ", ":")
    assert sent[0]["text"] == {"body": "Your order: " + json.dumps(result, ensure_ascii=False)}

    chat = await model_requests(bot, "chat")
    assert len(chat) == 2
    tool = order_tool(shop)
    assert chat[0]["body"]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "order_status",
                "description": tool["description"],
                "parameters": tool["parameters"],
            },
        }
    ]
    back = chat[1]["body"]["messages"]
    assert back[-2]["role"] == "assistant" and back[-2]["tool_calls"][0]["function"] == {
        "name": "order_status",
        "arguments": json.dumps(arguments, separators=(",", ":"), ensure_ascii=False),
    }
    assert back[-1] == {
        "role": "tool",
        "tool_call_id": back[-2]["tool_calls"][0]["id"],
        "content": json.dumps(result, ensure_ascii=False),
    }

    logged = await tool_calls(bot)
    assert [(c["tool"], c["arguments"], c["status"], c["error"]) for c in logged] == [
        ("order_status", arguments, 200, None)
    ]
    assert logged[0]["contact"] == CUSTOMER and logged[0]["duration_ms"] >= 0
    # The header's value: in no response, no plain column, no log row.
    got = await bot.app.client.get(f"/v1/numbers/{NUMBER_A}/bot", headers=bot.tenant())
    assert "shop-secret" not in got.text and got.json()["tools"][0]["headers"] == {
        "Authorization": None
    }
    row = await db.fetchrow("SELECT tools::text, tool_secrets_enc FROM bots")
    assert "shop-secret" not in row["tools"] and b"shop-secret" not in row["tool_secrets_enc"]
    assert "shop-secret" not in json.dumps(logged)
    rows = await replies_done(db, 1)
    assert rows[0]["outcome"] == "answered"


async def test_the_responses_api_sends_the_calls_back_with_their_outputs(
    bot: Meta, db: asyncpg.Connection, shop: Shop
) -> None:
    await give_credits(db, bot)
    tool = order_tool(shop, method="GET", body=None, url=shop.url + "/orders/{{order_id}}/status")
    await configure_bot(bot, model="o4-mini", reasoning_effort="low", tools=[tool])
    await script(
        bot,
        {"tool_calls": [{"name": "order_status", "arguments": {"order_id": "B-2"}}]},
        "Estado: {{tool_output:order_status}}",
    )
    await bot.customer_writes("¿mi pedido B-2?", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 1)
    assert '\\"status\\":\\"shipped\\"' in sent[0]["text"]["body"]
    assert [(r["method"], r["raw_path"], r["body"]) for r in shop.requests] == [
        ("GET", "/orders/B-2/status", "")
    ]
    responses = await model_requests(bot, "responses")
    assert len(responses) == 2
    assert responses[0]["body"]["tools"] == [
        {
            "type": "function",
            "name": "order_status",
            "description": tool["description"],
            "parameters": tool["parameters"],
        }
    ]
    items = responses[1]["body"]["input"]
    assert items[-2]["type"] == "function_call" and items[-2]["name"] == "order_status"
    assert items[-1]["type"] == "function_call_output"
    assert items[-1]["call_id"] == items[-2]["call_id"]
    assert json.loads(items[-1]["output"])["status"] == 200


async def test_failing_and_slow_tools_go_back_to_the_model_as_errors(
    bot: Meta, db: asyncpg.Connection, shop: Shop
) -> None:
    await give_credits(db, bot)
    await configure_bot(
        bot,
        model="gpt-4.1-mini",
        tools=[
            {"name": "stock", "url": shop.url + "/stock"},
            {"name": "slow", "url": shop.url + "/slow", "timeout_seconds": 0.5},
        ],
    )
    await script(
        bot,
        {"tool_calls": [{"name": "stock"}, {"name": "slow"}]},
        "stock={{tool_output:stock}} slow={{tool_output:slow}}",
    )
    await bot.customer_writes("do you have it?", sender=CUSTOMER)
    sent = await sent_to_customer(bot, 1)
    body = sent[0]["text"]["body"]
    assert '"status": 500' in body and "stock service down" in body
    assert 'slow={"error": "no answer within 0.5 s"}' in body
    logged = {c["tool"]: c for c in await tool_calls(bot)}
    assert (logged["stock"]["status"], logged["stock"]["error"]) == (500, None)
    assert (logged["slow"]["status"], logged["slow"]["error"]) == (None, "no answer within 0.5 s")
    assert logged["slow"]["duration_ms"] < 3000
    rows = await replies_done(db, 1)
    assert rows[0]["outcome"] == "answered"


async def test_tool_rounds_are_bounded_and_the_last_turn_may_not_call(
    bot: Meta, db: asyncpg.Connection, shop: Shop
) -> None:
    await give_credits(db, bot)
    await configure_bot(bot, model="gpt-4.1-mini", tools=[order_tool(shop, body=None)])
    again = {"tool_calls": [{"name": "order_status", "arguments": {"order_id": "C"}}]}
    await script(bot, *([again] * (MAX_ROUNDS + 1)))
    await bot.customer_writes("loop forever", sender=CUSTOMER)
    await sent_to_customer(bot, 1)
    chat = await model_requests(bot, "chat")
    assert len(chat) == MAX_ROUNDS + 1
    assert [r["body"].get("tool_choice") for r in chat] == [None] * MAX_ROUNDS + ["none"]
    assert len(shop.requests) == MAX_ROUNDS


async def test_a_tool_on_a_private_address_is_refused_unless_allowed(
    settings: Settings, db: asyncpg.Connection, shop: Shop
) -> None:
    guarded = replace(settings, allow_private_urls=False)
    async with meta_running(guarded, models=True) as meta:
        await give_credits(db, meta)
        await configure_bot(meta, model="gpt-4.1-mini", tools=[order_tool(shop, body=None)])
        await script(
            meta,
            {"tool_calls": [{"name": "order_status", "arguments": {"order_id": "D"}}]},
            "{{tool_output}}",
        )
        await meta.customer_writes("status of D", sender=CUSTOMER)
        sent = await sent_to_customer(meta, 1)
        assert shop.requests == []
        error = json.loads(sent[0]["text"]["body"])["error"]
        assert error.startswith("the tool's address is not allowed (")
        logged = await tool_calls(meta)
        assert logged[0]["status"] is None and logged[0]["error"] == error


async def test_tool_configuration_is_checked_and_header_values_follow_their_host(
    bot: Meta, db: asyncpg.Connection, shop: Shop
) -> None:
    put = f"/v1/numbers/{NUMBER_A}/bot"

    async def configure(tools: list[dict[str, Any]]) -> Any:
        return await bot.app.client.put(put, json={"tools": tools}, headers=bot.tenant())

    for bad in (
        [{"name": "send_file", "url": shop.url}],
        [{"name": "bad name", "url": shop.url}],
        [{"name": "x", "url": "http://{{host}}.example/a"}],
        [{"name": "x", "url": "ftp://example.com/a"}],
        [{"name": "x", "url": shop.url, "method": "TRACE"}],
        [{"name": "x", "url": shop.url, "headers": {"Host": "evil"}}],
        [{"name": "x", "url": shop.url, "timeout_seconds": 31}],
        [{"name": "x", "url": shop.url}, {"name": "x", "url": shop.url}],
        [{"name": "x", "url": shop.url, "parameters": {"type": "array"}}],
        [{"name": "x", "url": shop.url, "extra": 1}],
        [{"name": "x", "url": shop.url, "headers": {"X-Key": None}}],  # a new header, no value
    ):
        response = await configure(bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "invalid_field", bad

    assert (await configure([order_tool(shop)])).status_code == 200
    kept = order_tool(shop, headers={"Authorization": None}, description="Changed.")
    assert (await configure([kept])).status_code == 200
    moved = order_tool(
        shop, headers={"Authorization": None}, url="http://orders.example/{{order_id}}"
    )
    refused = await configure([moved])
    assert refused.status_code == 422 and "Authorization" in refused.json()["error"]["message"]
    # The kept value is the one sent: the tool still works with it.
    await give_credits(db, bot)
    await configure_bot(bot, model="gpt-4.1-mini", tools=[{**kept, "body": None}])
    await script(
        bot, {"tool_calls": [{"name": "order_status", "arguments": {"order_id": "E"}}]}, "ok"
    )
    await bot.customer_writes("E?", sender=CUSTOMER)
    await sent_to_customer(bot, 1)
    assert shop.requests[0]["headers"]["authorization"] == SECRET
