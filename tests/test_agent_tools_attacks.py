"""The assistant's HTTP tools attacked: by the model (steered by a customer's message), by a
tenant's own tool server, by whoever holds a tenant's key, by a second tenant.

Most tests drive `parse_tools` / `call_tool` directly: the tool's server is a raw ASGI app
served by uvicorn on 127.0.0.1 (`ToolServer`), reached over real HTTP through the URL guard's
client, and it records each request exactly as it arrived (method, raw path, query, headers,
body); its answers (a slow drip, gzip chunks) really cross the socket. The rest run the whole
reply through the sandbox's scripted model, as tests/test_agent_tools.py does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import ipaddress
import json
import time
import tracemalloc
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.conftest import (
    NUMBER_A,
    Meta,
    configure_bot,
    give_credits,
    sent_to_customer,
    serve_asgi,
)
from wa_cloud.ai.tools import (
    MAX_RESPONSE_BYTES,
    MAX_TOOLS,
    Tool,
    ToolBox,
    ToolCall,
    call_tool,
    parse_tools,
)
from wa_cloud.errors import Unprocessable
from wa_cloud.urlguard import GuardedClient, IPAddress, UrlGuard

CUSTOMER = "16505551234"
SECRET = "Bearer shop-secret-7f3a"
SHOP = "https://shop.example"  # a tool's origin; `call` serves it from a ToolServer
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


# --- helpers ------------------------------------------------------------------------------------


def tool(**overrides: Any) -> Tool:
    values: dict[str, Any] = {
        "name": "order_status",
        "description": "The status of an order.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        "method": "GET",
        "url": SHOP + "/api/orders/{{order_id}}/status",
        "header_names": ("Authorization",),
        "body": None,
        "timeout_seconds": 2.0,
        **overrides,
    }
    return Tool(**values)


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as it reached the tool's server."""

    method: str
    raw_path: bytes
    query: bytes
    headers: httpx.Headers
    body: bytes


# An answer: status, headers, and the body whole or as chunks (each sent as it comes).
Reply = tuple[int, Mapping[str, str], bytes | AsyncIterable[bytes]]
Handler = Callable[[Seen], Reply | Awaitable[Reply]]
OK: Reply = (200, {"content-type": "application/json"}, b'{"ok": true}')


class ToolServer:
    """A tenant's tool server on loopback (a raw ASGI app, served by `serve_asgi`): it keeps
    every request and answers with `answer`. `client` is the URL guard's client (private
    addresses allowed) whose resolver answers 127.0.0.1 for that address alone and keeps every
    host it was asked: a tool reaching any other host fails and shows in `resolved`."""

    def __init__(self, answer: Handler | None = None) -> None:
        self.requests: list[Seen] = []
        self.resolved: list[tuple[str, int]] = []
        self._answer = answer
        self.base = ""
        self.client: GuardedClient

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.resolved.append((host, port))
        if host != str(LOOPBACK):
            raise OSError(f"{host} is not the tool server")
        return [LOOPBACK]

    def serving(self, t: Tool) -> Tool:
        """The tool with its SHOP origin replaced by this server's."""
        return dataclasses.replace(t, url=t.url.replace(SHOP, self.base, 1))

    @property
    def host(self) -> str:
        return self.base.removeprefix("http://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen = Seen(
            scope["method"],
            scope["raw_path"],
            scope["query_string"],
            httpx.Headers(scope["headers"]),
            body,
        )
        self.requests.append(seen)
        reply = OK if self._answer is None else self._answer(seen)
        status, headers, content = reply if isinstance(reply, tuple) else await reply
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        if isinstance(content, bytes):
            raw_headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        if isinstance(content, bytes):
            await send({"type": "http.response.body", "body": content})
            return
        # Chunks until the body ends or the client hangs up (uvicorn drops what is sent after
        # a disconnect without a word: without this, a drip would outlive the test).
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            async for chunk in content:
                if gone.is_set():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


@contextlib.asynccontextmanager
async def tool_server(answer: Handler | None = None) -> AsyncIterator[ToolServer]:
    server = ToolServer(answer)
    async with serve_asgi(server) as base:
        server.base = base
        async with UrlGuard(allow_private=True, resolve=server.resolve).client(timeout=5) as client:
            server.client = client
            yield server


async def call(
    t: Tool,
    arguments: Mapping[str, Any] | str,
    answer: Handler | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[ToolCall, ToolServer]:
    """Call `t` with its SHOP origin served by a fresh ToolServer over real HTTP."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    async with tool_server(answer) as server:
        result = await call_tool(
            server.client,
            server.serving(t),
            {"Authorization": SECRET} if headers is None else headers,
            raw,
        )
    return result, server


def stored_tool(url: str) -> dict[str, Any]:
    return {"name": "order_status", "url": url, "headers": {"Authorization": SECRET}}


# --- the URL: an argument may fill a path segment or a query value, nothing else -----------------


@pytest.mark.parametrize(
    "argument",
    [
        "@evil.example",
        "x@evil.example/",
        "#@evil.example",
        "\\\\evil.example",
        "//evil.example/x",
        "%2F%2Fevil.example",
        "evil.example:8080",
        "[::1]",
        "http://evil.example/",
        "\uff0f\uff0fevil\u3002example",  # fullwidth solidus, ideographic full stop
        "?x=1&y=2",
        "\r\nHost: evil.example",
    ],
)
async def test_a_url_argument_cannot_change_scheme_host_port_or_userinfo(argument: str) -> None:
    result, server = await call(tool(), {"order_id": argument})
    assert result.status == 200, result
    # One request, to the tool's server and no other host (a fragment never leaves the
    # client: one would show as a path cut short of /status).
    port = int(server.host.rsplit(":", 1)[1])
    assert server.resolved == [("127.0.0.1", port)]
    (request,) = server.requests
    assert request.query == b""
    assert request.raw_path.startswith(b"/api/orders/") and request.raw_path.endswith(b"/status")
    assert request.headers["authorization"] == SECRET
    assert request.headers.get_list("host") == [server.host]


@pytest.mark.parametrize("argument", ["..", "."])
async def test_a_dot_segment_argument_cannot_climb_out_of_the_tools_path(argument: str) -> None:
    """FINDING: `quote(..., safe="")` leaves `.` alone, and httpx removes dot segments: the
    order id `..` turns /api/orders/{{order_id}}/status into /api/status, with the tool's
    secret header, on the business's API (a customer can steer the model to any such id)."""
    result, server = await call(tool(), {"order_id": argument})
    if server.requests:  # (refusing the argument is as good as encoding it)
        path = server.requests[0].raw_path
        assert path.startswith(b"/api/orders/") and path.endswith(b"/status"), path
        assert path != b"/api/orders/status", path
    else:
        assert result.error is not None


# --- the body: JSON-escaped arguments ----------------------------------------------------------

BODY = '{"order": "{{order_id}}", "note": "{{note}}", "qty": {{qty}}}'


@pytest.mark.parametrize(
    "note",
    [
        'say "hi"',
        "back\\slash\\",
        '", "admin": true, "x": "',
        '\\u0022, \\"admin\\": true',
        "ctl \x00\x01\x08\x0b\x1f\x7f end",
        "line\u2028sep\u2029para",
        "\ufeffbom and emoji 🧾 and ñ",
        "</script><!--",
    ],
)
async def test_a_string_argument_cannot_break_out_of_its_quoted_body_string(note: str) -> None:
    result, server = await call(
        tool(method="POST", body=BODY), {"order_id": "A-1", "note": note, "qty": 2}
    )
    assert result.status == 200, result
    (request,) = server.requests
    assert request.method == "POST"
    assert json.loads(request.body) == {"order": "A-1", "note": note, "qty": 2}
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "note",
    [
        [",", ":"],  # '"note": "[",", ":"]"' : a key '", "' appears beside "note"
        {",": ":"},
        {"a": 1},
        [1, 2],
    ],
)
async def test_a_non_string_argument_in_a_quoted_placeholder_keeps_the_bodys_shape(
    note: Any,
) -> None:
    """FINDING: a list or object is written as raw JSON even between the template's quotes:
    the quotes inside it close the string, and the body gets other keys (or stops being JSON).
    The schema says `note` is a string; the model is free to send anything."""
    result, server = await call(
        tool(method="POST", body=BODY), {"order_id": "A-1", "note": note, "qty": 2}
    )
    if not server.requests:  # refusing the call is a fix too
        assert result.error is not None
        return
    sent = json.loads(server.requests[0].body)
    assert set(sent) == {"order", "note", "qty"}, sent
    assert isinstance(sent["note"], str) and sent["qty"] == 2


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (SHOP + "/api/orders/{{order_id}}/status", None),
        (SHOP + "/api/orders", '{"order": "{{order_id}}"}'),
    ],
)
async def test_an_unencodable_argument_is_a_result_for_the_model_not_an_exception(
    url: str, body: str | None
) -> None:
    """FINDING: a lone surrogate (`"\\ud800"` in the model's arguments, valid JSON) makes
    `quote()` and `content.encode()` raise UnicodeEncodeError, which call_tool does not catch:
    the exception leaves Models.answer (not a ModelFailed), the reply job fails, is claimed again
    after its lease (the model and the other tools called again) and the customer gets nothing."""
    raw = '{"order_id": "A\\ud800B"}'
    t = tool(method="POST" if body else "GET", url=url, body=body)
    result, _ = await call(t, raw)
    assert isinstance(result, ToolCall)
    assert result.error is not None or result.status == 200


async def test_arguments_that_are_not_an_object_and_unknown_tools_are_results() -> None:
    for raw in ("[1]", "null", '"x"', "{", "1e999999"):
        result, server = await call(tool(), raw)
        assert result.error == "the arguments were not a JSON object" and not server.requests
        assert json.loads(result.result) == {"error": result.error}
    async with tool_server() as server:
        secrets = {"order_status": {"Authorization": SECRET}}
        box = ToolBox(server.client, [server.serving(tool())], secrets)
        (out,) = await box.run_round([("Order_Status", '{"order_id": "1"}')])  # case-sensitive
        assert "no tool named" in json.loads(out)["error"] and not server.requests
        (out,) = await box.run_round([("x" * 10_000, "{")])
        assert len(out) < 200 and box.calls[-1].arguments == {}


# --- the response: capped, timed ------------------------------------------------------------


async def test_a_huge_response_is_capped_and_a_slow_drip_is_cut_at_the_timeout() -> None:
    text = {"content-type": "text/plain"}
    huge, _ = await call(tool(), {"order_id": "1"}, lambda r: (200, text, b"x" * 10**6))
    body = json.loads(huge.result)["body"]
    assert body == "x" * MAX_RESPONSE_BYTES + " [truncated]"

    async def drip() -> AsyncIterator[bytes]:
        for _ in range(100):
            await asyncio.sleep(0.1)
            yield b"x"

    started = time.monotonic()
    slow, server = await call(
        tool(timeout_seconds=0.5), {"order_id": "1"}, lambda r: (200, text, drip())
    )
    assert slow.error == "no answer within 0.5 s" and time.monotonic() - started < 2
    assert len(server.requests) == 1


async def test_a_compressed_response_is_not_inflated_far_past_the_cap() -> None:
    """FINDING: `_read_capped` counts decoded bytes: httpx inflates each received chunk whole
    (zlib without max_length), so one 64 KB network read of a gzip bomb becomes ~64 MB in
    memory before the cap is looked at (deflate reaches ~1000:1). A tenant's server (or
    whoever answers at its host) can make every reply of a worker allocate that much; 32 jobs
    in flight multiply it. Here: 16 KB chunks, each inflating to ~16 MB."""
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(bomb), 16 << 10):
            yield bomb[i : i + (16 << 10)]
            await asyncio.sleep(0.01)  # one chunk a network read, as from a real server

    def answer(request: Seen) -> Reply:
        assert request.headers["accept-encoding"] == "identity"  # asked uncompressed, even so
        return 200, {"content-encoding": "gzip", "content-type": "text/plain"}, chunks()

    # The server shares this process: its side (16 KB slices, uvicorn's buffers) is counted
    # too, and stays far below the bound; the bound is about what our read inflates.
    async with tool_server(answer) as server:
        t = server.serving(tool())
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            result = await call_tool(server.client, t, {}, '{"order_id": "1"}')
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(server.requests) == 1
    assert result.error is not None or len(json.loads(result.result)["body"]) <= 20_000
    assert peak < 4 << 20, f"peak {peak / 2**20:.0f} MiB for a {MAX_RESPONSE_BYTES} byte cap"


# --- the client: redirects, private addresses (the real guarded client) --------------------


async def test_redirects_are_not_followed_and_private_addresses_are_refused() -> None:
    seen: list[tuple[str, str | None]] = []

    async def hop(request: Request) -> Response:
        seen.append((request.url.path, request.headers.get("authorization")))
        return Response(status_code=302, headers={"location": "/steal"})

    async def steal(request: Request) -> Response:
        seen.append((request.url.path, request.headers.get("authorization")))
        return JSONResponse({})

    app = Starlette(routes=[Route("/api/orders/{o}/status", hop), Route("/steal", steal)])
    async with serve_asgi(app) as base:
        open_guard = UrlGuard(allow_private=True).client(timeout=5)
        strict = UrlGuard(allow_private=False).client(timeout=5)
        async with open_guard, strict:
            t = tool(url=base + "/api/orders/{{order_id}}/status")
            moved = await call_tool(open_guard, t, {"Authorization": SECRET}, '{"order_id": "1"}')
            assert moved.status == 302 and seen == [("/api/orders/1/status", SECRET)]
            for url in (base, "http://localhost" + base[len("http://127.0.0.1") :]):
                t = tool(url=url + "/api/orders/{{order_id}}/status")
                refused = await call_tool(strict, t, {"Authorization": SECRET}, '{"order_id": "2"}')
                assert refused.error is not None and "not allowed" in refused.error, refused
                assert SECRET not in refused.result
    assert len(seen) == 1


# --- the configuration: PUT's rules ---------------------------------------------------------


@pytest.mark.parametrize(
    "moved",
    [
        "http://shop.example/api/orders/{{order_id}}",  # https -> http: the secret in clear
        "https://shop.example:8443/api/orders/{{order_id}}",  # another service on that host
        "http://shop.example:8080/api/orders/{{order_id}}",
    ],
)
def test_a_kept_header_value_does_not_follow_a_tool_to_another_scheme_or_port(
    moved: str,
) -> None:
    """FINDING: "kept only while the tool's host stays the same" compares the host alone, so
    whoever holds the tenant's key (the values are write-only even to them) can keep the
    secret and move the tool from https to plain http, or to another port of that host. The
    model key's rule compares the whole base_url; compare at least scheme, host and port (the
    path too, on shared hosts: script.google.com/macros/s/<id>, hooks.zapier.com, ...)."""
    current = (tool(url=SHOP + "/api/orders/{{order_id}}"),)
    secrets = {"order_status": {"Authorization": SECRET}}
    item = {"name": "order_status", "url": moved, "headers": {"Authorization": None}}
    with pytest.raises(Unprocessable):
        parse_tools([item], current=current, secrets=secrets)


def test_a_kept_header_value_stays_with_the_same_origin_only() -> None:
    current = (tool(url=SHOP + "/api/orders/{{order_id}}"),)
    secrets = {"order_status": {"Authorization": SECRET}}
    same = {
        "name": "order_status",
        "url": SHOP + "/api/orders/{{order_id}}?v=2",
        "headers": {"Authorization": None},
    }
    _, kept = parse_tools([same], current=current, secrets=secrets)
    assert kept == secrets
    for url in ("https://evil.example/api", "https://shop.example.evil.example/api"):
        with pytest.raises(Unprocessable):
            parse_tools([{**same, "url": url}], current=current, secrets=secrets)
    # Another tool's name, or another header's name (case counts), is a new value to give.
    for item in (
        {**same, "name": "other"},
        {**same, "headers": {"authorization": None}},
    ):
        with pytest.raises(Unprocessable):
            parse_tools([item], current=current, secrets=secrets)


@pytest.mark.parametrize(
    "item",
    [
        {"url": SHOP + "/a", "headers": {"X-Key": "a\r\nX-Injected: 1"}},
        {"url": SHOP + "/a", "headers": {"X-Key": "a\nb"}},
        {"url": SHOP + "/a", "headers": {"X-Key": "a\x00b"}},
        {"url": SHOP + "/a", "headers": {"X-Key": "a\u2028b"}},
        {"url": SHOP + "/a", "headers": {"X-Key: y": "v"}},
        {"url": SHOP + "/a", "headers": {"X-Key\r\nY": "v"}},
        {"url": SHOP + "/a", "headers": {"Transfer-Encoding": "chunked"}},
        {"url": SHOP + "/a", "headers": {"HOST": "evil.example"}},
        {"url": SHOP + "/a", "headers": ["X-Key", "v"]},
        {"url": SHOP + "/a", "headers": {"X-Key": 5}},
        {"url": "https://{{u}}@shop.example/a"},
        {"url": "https://shop.example@{{h}}/a"},
        {"url": "https://shop.example:{{port}}/a"},
        {"url": "https://shop.example:44{{port}}/a"},
        {"url": "http{{s}}://shop.example/a"},
        {"url": "{{url}}"},
        {"url": "https://{{sub}}.shop.example/a"},
        {"url": "https://shop.example{{p}}/a"},
        {"url": "https://[::1{{p}}]/a"},
        {"url": "https://shop.example\\{{p}}@evil.example/a"},
        {"url": "https://user:pw@shop.example/a"},
        {"url": "file:///etc/passwd"},
        {"url": "http://[::1"},
        {"url": SHOP + "/a" + "b" * 2000},
        {"url": 5},
        {"url": SHOP + "/a", "method": ["GET"]},
        {"url": SHOP + "/a", "method": "CONNECT"},
        {"url": SHOP + "/a", "timeout_seconds": True},
        {"url": SHOP + "/a", "timeout_seconds": float("nan")},
        {"url": SHOP + "/a", "timeout_seconds": float("inf")},
        {"url": SHOP + "/a", "timeout_seconds": "5"},
        {"url": SHOP + "/a", "timeout_seconds": 0},
        {"url": SHOP + "/a", "body": {"a": 1}},
        {"url": SHOP + "/a", "description": 5},
        {"url": SHOP + "/a", "parameters": []},
        {"url": SHOP + "/a", "parameters": {"type": "object", "properties": []}},
        {"url": SHOP + "/a", "parameters": {"type": "object", "x": "y" * 20_000}},
        {"url": SHOP + "/a", "name": "a" * 65},
        {"url": SHOP + "/a", "name": "ordér"},
        {"url": SHOP + "/a", "name": 5},
    ],
)
def test_malformed_tools_are_refused_as_invalid_fields(item: dict[str, Any]) -> None:
    with pytest.raises(Unprocessable) as refused:
        parse_tools([{"name": "t", **item}], current=(), secrets={})
    assert refused.value.code == "invalid_field"
    assert "evil" not in str(refused.value) or "header" in str(refused.value)


@pytest.mark.parametrize("url", ["http://xn--.example/a", "https://xn--ls8h.xn--/{{x}}"])
def test_a_url_whose_host_is_a_malformed_a_label_is_refused_not_a_500(url: str) -> None:
    """FINDING: `_url` reads `url.host`, which decodes IDNA: a host such as `xn--.example`
    passes checked_url (it keeps the raw host) and then raises idna.IDNAError, which is no
    Unprocessable: PUT /v1/numbers/{id}/bot answers 500 (see the end-to-end test below)."""
    with pytest.raises(Unprocessable):
        parse_tools([{"name": "t", "url": url}], current=(), secrets={})


def test_a_tools_list_is_bounded_and_names_are_unique() -> None:
    many = [{"name": f"t{i}", "url": SHOP + "/a"} for i in range(MAX_TOOLS + 1)]
    for value in (many, {"name": "t"}, "t", [None]):
        with pytest.raises(Unprocessable):
            parse_tools(value, current=(), secrets={})


@pytest.mark.parametrize("value", ["clé", "Bearer tökén", "ключ", "\u00e9"])
async def test_a_header_value_put_accepts_can_be_sent(value: str) -> None:
    """FINDING: PUT accepts any printable text as a header value (`str.isprintable()`), but
    httpx encodes header values as ASCII: `build_request` raises UnicodeEncodeError, which
    call_tool does not catch. Every reply that calls the tool then fails as a job (retried
    after its lease, the model asked again) instead of the model reading an error."""
    item = {"name": "t", "url": SHOP + "/a", "headers": {"X-Key": value}}
    try:
        tools, secrets = parse_tools([item], current=(), secrets={})
    except Unprocessable:
        return  # refused at PUT: fixed
    result, _ = await call(tools[0], {}, headers=secrets["t"])
    assert isinstance(result, ToolCall) and (result.error is not None or result.status == 200)
    assert value not in (result.error or "")


# --- end to end: the reply pipeline ---------------------------------------------------------


async def script(meta: Meta, *replies: Any) -> None:
    response = await meta.sandbox.post("/_models/script", json={"replies": list(replies)})
    assert response.status_code in (200, 201), response.text


async def tool_calls(meta: Meta, number: str = NUMBER_A) -> httpx.Response:
    return await meta.app.client.get(f"/v1/numbers/{number}/tool-calls", headers=meta.tenant())


@pytest.fixture
async def shop() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def order(request: Request) -> Response:
        seen.append(request.scope["raw_path"].decode())
        return JSONResponse({"status": "shipped"})

    app = Starlette(routes=[Route("/orders/{order_id:path}", order, methods=["GET", "POST"])])
    async with serve_asgi(app) as url:
        yield url, seen


def shop_tool(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "order_status",
        "description": "The status of an order by its id.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
        "url": url + "/orders/{{order_id}}",
        "headers": {"Authorization": SECRET},
        "timeout_seconds": 5,
        **overrides,
    }


async def wait_for(check: Callable[[], Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)


async def test_one_model_turn_cannot_fan_out_into_unbounded_tool_calls(
    bot: Meta, db: asyncpg.Connection, shop: tuple[str, list[str]]
) -> None:
    """FINDING: MAX_ROUNDS bounds the turns, nothing bounds the calls in a turn: a model
    (asked by a customer to "check orders 1 to 500") returns any number of tool calls and each
    is made, one after another, until ANSWER_BUDGET (60 s): hundreds of requests with the
    business's secret, hundreds of tool_calls rows, from one customer message."""
    url, seen = shop
    await give_credits(db, bot)
    await configure_bot(bot, model="gpt-4.1-mini", tools=[shop_tool(url)])
    fan = [{"name": "order_status", "arguments": {"order_id": str(i)}} for i in range(64)]
    await script(bot, {"tool_calls": fan}, "done")
    await bot.customer_writes("check my orders 0 to 63", sender=CUSTOMER)
    await sent_to_customer(bot, 1)
    assert len(seen) <= MAX_TOOLS, f"{len(seen)} requests to the tool from one message"


async def test_a_nul_in_the_arguments_does_not_lose_the_reply_or_repeat_the_call(
    bot: Meta, db: asyncpg.Connection, shop: tuple[str, list[str]]
) -> None:
    """FINDING: `"\\u0000"` in the model's arguments is sent fine (%00), but jsonb refuses
    `\\u0000`: log_tool_calls fails inside _finish, its transaction rolls back, the job is
    claimed again after the lease: the tool (maybe a POST) is called again, the customer is
    never answered, and the call is never logged."""
    url, seen = shop
    await give_credits(db, bot)
    await configure_bot(bot, model="gpt-4.1-mini", tools=[shop_tool(url, method="POST")])
    raw = '{"order_id": "A\\u0000B"}'
    calling = {"tool_calls": [{"name": "order_status", "arguments": raw}]}
    # Scripted twice: a job claimed again asks the model again, and it calls again.
    await script(bot, calling, "ok", calling, "ok")
    await bot.customer_writes("order A?", sender=CUSTOMER)

    async def answered_or_repeated() -> bool:
        return len(seen) > 1 or bool(await bot.sent_bodies())

    await wait_for(answered_or_repeated, 9)
    assert len(seen) == 1, seen
    assert await bot.sent_bodies(), "the customer was never answered"
    logged = await tool_calls(bot)
    assert [c["tool"] for c in logged.json()["data"]] == ["order_status"]


async def test_a_previous_owners_tools_and_calls_are_not_the_new_owners(
    bot: Meta, db: asyncpg.Connection
) -> None:
    """The bots row and the tool calls of a tenant that had the number before: never read."""
    other = await bot.app.create_tenant("Previous Owner")
    stale = [stale_tool := shop_tool("https://old-owner.example")]
    stale_tool["headers"] = {"Authorization": None}
    await db.execute(
        "INSERT INTO bots (phone_number_id, tenant_id, instructions, tools, tool_secrets_enc)"
        " VALUES ($1, $2::uuid, 'x', $3::jsonb, $4)",
        NUMBER_A,
        other["id"],
        json.dumps(stale),
        b"sealed-by-the-previous-owner",
    )
    await db.execute(
        "INSERT INTO tool_calls (tenant_id, phone_number_id, tool, arguments, duration_ms)"
        " VALUES ($1::uuid, $2, 'order_status', '{\"order\": \"old-owner-secret\"}', 1)",
        other["id"],
        NUMBER_A,
    )
    got = await bot.app.client.get(f"/v1/numbers/{NUMBER_A}/bot", headers=bot.tenant())
    assert got.status_code == 200 and got.json()["tools"] == []
    listed = await tool_calls(bot)
    assert listed.status_code == 200 and listed.json()["data"] == []
    # A PUT that "keeps" the previous owner's header value has nothing to keep.
    put = await bot.app.client.put(
        f"/v1/numbers/{NUMBER_A}/bot", json={"tools": stale}, headers=bot.tenant()
    )
    assert put.status_code == 422 and put.json()["error"]["code"] == "invalid_field"
    # Another tenant reads neither.
    third = await bot.app.create_tenant("Third")
    headers = {"authorization": f"Bearer {third['api_key']}"}
    for path in ("bot", "tool-calls"):
        response = await bot.app.client.get(f"/v1/numbers/{NUMBER_A}/{path}", headers=headers)
        assert response.status_code == 404, response.text


async def test_put_with_a_malformed_idna_tool_host_is_a_422_not_a_500(bot: Meta) -> None:
    """FINDING (end to end): the IDNAError of `_url` above reaches the client as a 500."""
    response = await bot.app.client.put(
        f"/v1/numbers/{NUMBER_A}/bot",
        json={"tools": [{"name": "t", "url": "http://xn--.example/a"}]},
        headers=bot.tenant(),
    )
    assert response.status_code == 422, (response.status_code, response.text)
    assert response.json()["error"]["code"] == "invalid_field"
