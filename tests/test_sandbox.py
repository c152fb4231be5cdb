"""The Meta Graph API sandbox over real HTTP: Meta's shapes and error codes, the limits it
enforces, and the signed webhooks it posts to a loopback receiver."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wa_cloud.inbound.signature import verify
from wa_cloud.sandbox import SandboxConfig, create_sandbox

SECRET = "sandbox-test-app-secret"
APP_ID = "1000000000000001"
NUMBER = "106540352242922"
OTHER = "106540352242923"
WABA = "102290129340398"
OTHER_WABA = "102290129340399"
TOKEN = "EAAG-sandbox-token-a"
OTHER_TOKEN = "EAAG-sandbox-token-b"
USER = "16505551234"
VERSION = "v23.0"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@contextlib.asynccontextmanager
async def serve_asgi(app: Starlette) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port, lifespan on; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Receiver:
    """A loopback webhook endpoint that keeps every delivery (and can refuse the first ones)."""

    url: str = ""
    deliveries: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    refuse_next: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.deliveries.append((body, dict(request.headers)))
        self.changed.set()
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return Response(status_code=500)
        return Response(status_code=200)

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.deliveries]

    def statuses(self, wamid: str) -> list[dict[str, Any]]:
        found = []
        for document in self.documents():
            for entry in document["entry"]:
                for change in entry["changes"]:
                    for status in change["value"].get("statuses", []):
                        if status["id"] == wamid:
                            found.append(status)
        return found

    async def wait(self, check: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()


# One event loop for the module, so the receiver and a read-only sandbox are served once:
# starting and stopping uvicorn costs about 0.3 s per server.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def receiver_server() -> AsyncIterator[Receiver]:
    captured = Receiver()
    app = Starlette(routes=[Route("/hook", captured.endpoint, methods=["POST"])])
    async with serve_asgi(app) as base_url:
        captured.url = base_url + "/hook"
        yield captured


@pytest_asyncio.fixture(loop_scope="module")
async def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.deliveries.clear()
    receiver_server.refuse_next = 0
    return receiver_server


@dataclass
class Sandbox:
    client: httpx.AsyncClient
    app: Starlette

    async def send(
        self, body: dict[str, Any], *, number: str = NUMBER, token: str | None = TOKEN
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await self.client.post(f"/{VERSION}/{number}/messages", json=body, headers=headers)

    async def text(self, to: str = USER, body: str = "hello", **extra: Any) -> httpx.Response:
        message = {
            "messaging_product": "whatsapp",
            "to": to,
            "type": "text",
            "text": {"body": body},
        }
        return await self.send({**message, **extra})

    async def control(self, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = await self.client.post(f"/_sandbox/{path}", json=body)
        assert response.status_code == status, response.text
        return response.json()

    async def inbound(self, sender: str = USER, text: str = "hi") -> dict[str, Any]:
        return await self.control(
            "inbound", {"phone_number_id": NUMBER, "from": sender, "text": text}, 200
        )

    async def stats(self, number: str = NUMBER) -> dict[str, Any]:
        return (await self.client.get("/_sandbox/stats")).json()["numbers"][number]


MakeSandbox = Callable[..., Awaitable[Sandbox]]


@contextlib.asynccontextmanager
async def sandboxes(receiver_url: str | None) -> AsyncIterator[MakeSandbox]:
    """Start sandboxes (each seeded with two numbers) that all stop when the block ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(*, pin: str | None = "123456", mps: int = 80, **changes: Any) -> Sandbox:
            settings: dict[str, Any] = {
                "webhook_url": receiver_url,
                "app_secret": SECRET,
                "app_id": APP_ID,
                "sent_delay": 0.01,
                "delivered_delay": 0.02,
                "read_delay": 0.03,
                "template_approval_delay": 0.05,
                "webhook_retry_seconds": 0.02,
                "seed": 7,
            }
            app = create_sandbox(SandboxConfig(**{**settings, **changes}))
            base_url = await stack.enter_async_context(serve_asgi(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, timeout=10)
            )
            sandbox = Sandbox(client, app)
            await sandbox.control(
                "numbers",
                {
                    "phone_number_id": NUMBER,
                    "waba_id": WABA,
                    "access_token": TOKEN,
                    "display_phone_number": "15550783881",
                    "throughput_mps": mps,
                    "pin": pin,
                },
            )
            await sandbox.control(
                "numbers",
                {"phone_number_id": OTHER, "waba_id": OTHER_WABA, "access_token": OTHER_TOKEN},
            )
            return sandbox

        yield make


@pytest_asyncio.fixture(loop_scope="module")
async def make_sandbox(receiver: Receiver) -> AsyncIterator[MakeSandbox]:
    async with sandboxes(receiver.url) as make:
        yield make


@pytest_asyncio.fixture(loop_scope="module")
async def sandbox(make_sandbox: MakeSandbox) -> Sandbox:
    return await make_sandbox()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared() -> AsyncIterator[Sandbox]:
    """One sandbox without webhooks for the checks that leave no state behind."""
    async with sandboxes(None) as make:
        yield await make()


def assert_meta_error(
    response: httpx.Response, codes: set[int], status: int = 400
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] in codes, error
    assert error["type"] == "OAuthException"
    assert isinstance(error["message"], str) and error["message"]
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert isinstance(error["error_data"]["details"], str)
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"]
    return error


def signed(receiver: Receiver) -> None:
    for body, headers in receiver.deliveries:
        verify(body, headers.get("x-hub-signature-256"), SECRET)


# --- sends ------------------------------------------------------------------------------


async def test_text_send_has_metas_response_shape(sandbox: Sandbox) -> None:
    response = await sandbox.text(to="+1 650-555-1234")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+1 650-555-1234", "wa_id": USER}]
    [message] = body["messages"]
    assert message["id"].startswith("wamid.") and message["message_status"] == "accepted"
    second = await sandbox.text()
    assert second.json()["messages"][0]["id"] != message["id"]


MEDIA_LINK = {"link": "https://example.com/file"}
VALID_SENDS: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": {"body": "hi", "preview_url": True}},
    "image": {"type": "image", "image": {**MEDIA_LINK, "caption": "a cat"}},
    "audio": {"type": "audio", "audio": {**MEDIA_LINK, "voice": True}},
    "video": {"type": "video", "video": MEDIA_LINK},
    "document": {"type": "document", "document": {**MEDIA_LINK, "filename": "a.pdf"}},
    "sticker": {"type": "sticker", "sticker": MEDIA_LINK},
    "location": {"type": "location", "location": {"latitude": 37.48, "longitude": -122.14}},
    "contacts": {
        "type": "contacts",
        "contacts": [{"name": {"formatted_name": "Ann Lee"}, "phones": [{"phone": "+1 555"}]}],
    },
    "button": {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pick one"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": f"b{i}", "title": f"Option {i}"}}
                    for i in range(3)
                ]
            },
        },
    },
    "list": {
        "type": "interactive",
        "interactive": {
            "type": "list",
            "header": {"type": "text", "text": "Menu"},
            "body": {"text": "Choose"},
            "footer": {"text": "Thanks"},
            "action": {
                "button": "See options",
                "sections": [
                    {"title": "A", "rows": [{"id": "r1", "title": "One", "description": "x"}]},
                    {"title": "B", "rows": [{"id": f"s{i}", "title": f"T{i}"} for i in range(9)]},
                ],
            },
        },
    },
    "cta_url": {
        "type": "interactive",
        "interactive": {
            "type": "cta_url",
            "body": {"text": "Visit"},
            "action": {
                "name": "cta_url",
                "parameters": {"display_text": "Open", "url": "https://example.com"},
            },
        },
    },
    "flow": {
        "type": "interactive",
        "interactive": {
            "type": "flow",
            "body": {"text": "Book"},
            "action": {
                "name": "flow",
                "parameters": {"flow_message_version": "3", "flow_id": "1", "flow_cta": "Book"},
            },
        },
    },
    "reaction": {"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "\U0001f44d"}},
    "reply": {"type": "text", "text": {"body": "re"}, "context": {"message_id": "wamid.X"}},
}


@pytest.mark.parametrize("kind", sorted(VALID_SENDS))
async def test_every_send_type_is_accepted(shared: Sandbox, kind: str) -> None:
    response = await shared.send({"messaging_product": "whatsapp", "to": USER, **VALID_SENDS[kind]})
    assert response.status_code == 200, response.text
    assert response.json()["messages"][0]["id"].startswith("wamid.")


def _with(kind: str, **changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(VALID_SENDS[kind]))
    body.update(changes)
    return body


def _interactive(kind: str, action: dict[str, Any]) -> dict[str, Any]:
    body = _with(kind)
    body["interactive"]["action"] = action
    return body


BROKEN_SENDS: dict[str, tuple[dict[str, Any], set[int]]] = {
    "no messaging_product": ({"messaging_product": None}, {100}),
    "wrong messaging_product": ({"messaging_product": "sms"}, {100}),
    "no recipient": ({"to": None}, {100}),
    "bad phone number": ({"to": "call me"}, {100}),
    "unknown type": ({"type": "hologram", "hologram": {}}, {100}),
    "text without object": ({"type": "text", "text": None}, {131008}),
    "text without body": (_with("text", text={}), {131008}),
    "text too long": (_with("text", text={"body": "x" * 4097}), {100}),
    "image without id or link": (_with("image", image={"caption": "c"}), {131008}),
    "image with id and link": (
        _with("image", image={"id": "1", "link": "https://e.x/a"}),
        {131009},
    ),
    "image bad link": (_with("image", image={"link": "ftp://e.x/a"}), {131009}),
    "image unknown id": (_with("image", image={"id": "999"}), {100}),
    "location without latitude": (_with("location", location={"longitude": 1}), {131008}),
    "location out of range": (
        _with("location", location={"latitude": 91, "longitude": 1}),
        {131009},
    ),
    "contacts empty": (_with("contacts", contacts=[]), {131009}),
    "contacts without name": (_with("contacts", contacts=[{"phones": []}]), {131008}),
    "four buttons": (
        _interactive(
            "button",
            {
                "buttons": [
                    {"type": "reply", "reply": {"id": f"{i}", "title": f"{i}"}} for i in range(4)
                ]
            },
        ),
        {131009},
    ),
    "button title too long": (
        _interactive(
            "button", {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "x" * 21}}]}
        ),
        {131009},
    ),
    "eleven list rows": (
        _interactive(
            "list",
            {
                "button": "b",
                "sections": [{"rows": [{"id": f"{i}", "title": "t"} for i in range(11)]}],
            },
        ),
        {131009},
    ),
    "list row title too long": (
        _interactive(
            "list", {"button": "b", "sections": [{"rows": [{"id": "1", "title": "x" * 25}]}]}
        ),
        {131009},
    ),
    "cta_url bad url": (
        _interactive(
            "cta_url", {"name": "cta_url", "parameters": {"display_text": "a", "url": "x"}}
        ),
        {131009},
    ),
    "interactive without body": (
        {"type": "interactive", "interactive": {"type": "button", "action": {"buttons": []}}},
        {131008},
    ),
    "reaction without message_id": (_with("reaction", reaction={"emoji": "x"}), {131008}),
    "template without language": ({"type": "template", "template": {"name": "t"}}, {131008}),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SENDS))
async def test_broken_sends_get_metas_error(shared: Sandbox, case: str) -> None:
    changes, codes = BROKEN_SENDS[case]
    body = {"messaging_product": "whatsapp", "to": USER, **changes}
    body = {k: v for k, v in body.items() if v is not None}
    before = (await shared.stats())["accepted"]
    assert_meta_error(await shared.send(body), codes)
    assert (await shared.stats())["accepted"] == before


async def test_bearer_token_must_exist_and_own_the_number(shared: Sandbox) -> None:
    missing = await shared.send(
        VALID_SENDS["text"] | {"messaging_product": "whatsapp", "to": USER}, token=None
    )
    assert_meta_error(missing, {190}, 401)
    assert missing.headers["www-authenticate"].startswith("OAuth")
    unknown = await shared.send(
        VALID_SENDS["text"] | {"messaging_product": "whatsapp", "to": USER}, token="EAAG-nope"
    )
    assert_meta_error(unknown, {190}, 401)
    foreign = await shared.send(
        VALID_SENDS["text"] | {"messaging_product": "whatsapp", "to": USER}, token=OTHER_TOKEN
    )
    assert_meta_error(foreign, {10}, 403)
    nowhere = await shared.client.get(
        f"/{VERSION}/999999", headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert assert_meta_error(nowhere, {100})["error_subcode"] == 33


async def test_any_graph_version_prefix_is_accepted(shared: Sandbox) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    assert (await shared.client.get(f"/v19.0/{NUMBER}", headers=headers)).status_code == 200
    bad = await shared.client.get(f"/latest/{NUMBER}", headers=headers)
    assert_meta_error(bad, {2500})


# --- limits -----------------------------------------------------------------------------


async def test_throughput_over_the_rate_is_130429_and_under_it_passes(
    make_sandbox: MakeSandbox,
) -> None:
    sandbox = await make_sandbox(mps=10, webhook_url=None)
    burst = await asyncio.gather(*(sandbox.text(to=f"1650555{i:04d}") for i in range(10)))
    assert [r.status_code for r in burst] == [200] * 10
    over = await sandbox.text(to="16505559999")
    assert_meta_error(over, {130429}, 429)
    await asyncio.sleep(0.35)  # about three messages' worth of budget comes back
    again = [await sandbox.text(to=f"1650556{i:04d}") for i in range(2)]
    assert [r.status_code for r in again] == [200, 200]
    stats = await sandbox.stats()
    assert stats["accepted"] == 12 and stats["throughput_rejected"] == 1
    assert stats["first_accept_at"] <= stats["last_accept_at"]


async def test_pair_rate_is_131056_for_the_same_user_only(make_sandbox: MakeSandbox) -> None:
    sandbox = await make_sandbox(pair_burst=3, pair_interval_seconds=60, webhook_url=None)
    assert [(await sandbox.text()).status_code for _ in range(3)] == [200] * 3
    assert_meta_error(await sandbox.text(), {131056}, 429)
    assert (await sandbox.text(to="16505550000")).status_code == 200
    stats = await sandbox.stats()
    assert (stats["pair_rate_rejected"], stats["accepted"]) == (1, 4)


# --- webhooks ---------------------------------------------------------------------------


async def test_outside_window_is_accepted_then_fails_131047(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    response = await sandbox.text()
    assert response.status_code == 200
    wamid = response.json()["messages"][0]["id"]
    await receiver.wait(lambda: bool(receiver.statuses(wamid)))
    await asyncio.sleep(0.1)  # nothing else may follow a failure
    signed(receiver)
    [status] = receiver.statuses(wamid)
    assert status["status"] == "failed" and status["recipient_id"] == USER
    assert status["errors"][0]["code"] == 131047
    assert status["errors"][0]["error_data"]["details"]
    document = receiver.documents()[0]
    assert document["object"] == "whatsapp_business_account"
    assert document["entry"][0]["id"] == WABA
    assert document["entry"][0]["changes"][0]["field"] == "messages"
    assert document["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] == NUMBER


async def test_inbound_opens_the_window_and_statuses_arrive_signed(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    inbound = await sandbox.inbound(text="Olá, café?")
    assert inbound["webhook_status"] == 200
    [delivery] = receiver.documents()
    value = delivery["entry"][0]["changes"][0]["value"]
    assert value["metadata"] == {"display_phone_number": "15550783881", "phone_number_id": NUMBER}
    assert value["contacts"][0]["wa_id"] == USER
    message = value["messages"][0]
    assert (message["id"], message["from"], message["type"]) == (inbound["id"], USER, "text")
    assert message["text"] == {"body": "Olá, café?"} and message["timestamp"].isdigit()

    response = await sandbox.text(biz_opaque_callback_data="order-7")
    wamid = response.json()["messages"][0]["id"]
    await receiver.wait(lambda: len(receiver.statuses(wamid)) == 3)
    signed(receiver)
    by_name = {s["status"]: s for s in receiver.statuses(wamid)}
    assert set(by_name) == {"sent", "delivered", "read"}
    assert by_name["sent"]["pricing"] == {
        "billable": False,
        "pricing_model": "PMP",
        "category": "service",
        "type": "free_customer_service",
    }
    assert "pricing" not in by_name["read"]
    assert all(s["biz_opaque_callback_data"] == "order-7" for s in by_name.values())


async def test_window_set_by_the_control_api(sandbox: Sandbox, receiver: Receiver) -> None:
    day_ago = time.time() - 24 * 3600 - 5
    await sandbox.control("windows", {"phone_number_id": NUMBER, "user": USER, "at": day_ago}, 200)
    expired = (await sandbox.text()).json()["messages"][0]["id"]
    await sandbox.control("windows", {"phone_number_id": NUMBER, "user": "16505550002"}, 200)
    fresh = (await sandbox.text(to="16505550002")).json()["messages"][0]["id"]
    await receiver.wait(lambda: bool(receiver.statuses(expired)) and bool(receiver.statuses(fresh)))
    assert receiver.statuses(expired)[0]["status"] == "failed"
    assert "failed" not in {s["status"] for s in receiver.statuses(fresh)}
    assert not receiver.documents()[0]["entry"][0]["changes"][0]["value"].get("messages")


async def test_failed_deliveries_are_retried(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    sandbox = await make_sandbox()
    receiver.refuse_next = 1
    inbound = await sandbox.inbound()
    assert inbound["webhook_status"] == 200
    assert len(receiver.deliveries) == 2 and receiver.deliveries[0][0] == receiver.deliveries[1][0]


async def test_duplicates_and_reordering_when_asked(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    sandbox = await make_sandbox(duplicate_probability=1.0, reorder=True)
    await sandbox.inbound()
    wamid = (await sandbox.text()).json()["messages"][0]["id"]
    await receiver.wait(lambda: len(receiver.statuses(wamid)) == 6)
    names = [s["status"] for s in receiver.statuses(wamid)]
    assert sorted(names) == sorted(["sent", "delivered", "read"] * 2)


async def test_mark_as_read_with_typing_indicator(sandbox: Sandbox) -> None:
    inbound = await sandbox.inbound()
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": inbound["id"]}
    response = await sandbox.send({**body, "typing_indicator": {"type": "text"}})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert_meta_error(await sandbox.send({**body, "typing_indicator": {"type": "x"}}), {131009})


# --- templates --------------------------------------------------------------------------


def _template_send(name: str, params: list[str], language: str = "en_US") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": USER,
        "type": "template",
        "template": {
            "name": name,
            "language": {"code": language},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}
            ],
        },
    }


async def test_template_sends_are_checked_against_the_template(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    await sandbox.control(
        "templates",
        {
            "waba_id": WABA,
            "name": "order_update",
            "language": "en_US",
            "category": "UTILITY",
            "body": "Hi {{1}}, order {{2}} shipped.",
        },
    )
    await sandbox.control(
        "templates",
        {"waba_id": WABA, "name": "draft", "language": "en_US", "body": "x", "status": "PENDING"},
    )
    mismatch = await sandbox.send(_template_send("order_update", ["Ann"]))
    assert "(1)" in assert_meta_error(mismatch, {132000})["error_data"]["details"]
    assert_meta_error(await sandbox.send(_template_send("nope", ["a", "b"])), {132001})
    assert_meta_error(
        await sandbox.send(_template_send("order_update", ["a", "b"], "pt_BR")), {132001}
    )
    assert_meta_error(await sandbox.send(_template_send("draft", [])), {132001})

    ok = await sandbox.send(_template_send("order_update", ["Ann", "42"]))
    assert ok.status_code == 200, ok.text
    wamid = ok.json()["messages"][0]["id"]
    # A template needs no window; outside one a utility template is billed.
    await receiver.wait(lambda: any(s["status"] == "sent" for s in receiver.statuses(wamid)))
    sent = next(s for s in receiver.statuses(wamid) if s["status"] == "sent")
    assert sent["pricing"]["category"] == "utility" and sent["pricing"]["billable"] is True


async def test_template_header_format_and_named_parameters(sandbox: Sandbox) -> None:
    await sandbox.control(
        "templates",
        {
            "waba_id": WABA,
            "name": "promo",
            "language": "en",
            "category": "MARKETING",
            "parameter_format": "NAMED",
            "components": [
                {"type": "HEADER", "format": "IMAGE"},
                {"type": "BODY", "text": "Hi {{first_name}}"},
            ],
        },
    )
    body = _template_send("promo", ["Ann"], "en")
    body["template"]["components"][0]["parameters"][0]["parameter_name"] = "first_name"
    assert_meta_error(await sandbox.send(body), {132012})
    body["template"]["components"].append(
        {"type": "header", "parameters": [{"type": "image", "image": MEDIA_LINK}]}
    )
    assert (await sandbox.send(body)).status_code == 200
    body["template"]["components"][0]["parameters"][0]["parameter_name"] = "name"
    assert_meta_error(await sandbox.send(body), {132000})


async def test_template_management_approval_paging_and_delete(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    path = f"/{VERSION}/{WABA}/message_templates"
    for name in ("first_one", "second_one"):
        created = await sandbox.client.post(
            path,
            headers=headers,
            json={
                "name": name,
                "language": "en_US",
                "category": "MARKETING",
                "components": [{"type": "BODY", "text": "Sale {{1}}"}],
            },
        )
        assert created.status_code == 200, created.text
        assert created.json()["status"] == "PENDING" and created.json()["category"] == "MARKETING"
    duplicate = await sandbox.client.post(
        path,
        headers=headers,
        json={
            "name": "first_one",
            "language": "en_US",
            "category": "MARKETING",
            "components": [{"type": "BODY", "text": "x"}],
        },
    )
    assert_meta_error(duplicate, {100})

    def approvals() -> list[dict[str, Any]]:
        return [
            change["value"]
            for document in receiver.documents()
            for change in document["entry"][0]["changes"]
            if change["field"] == "message_template_status_update"
        ]

    await receiver.wait(lambda: len(approvals()) == 2)
    signed(receiver)
    assert {a["event"] for a in approvals()} == {"APPROVED"}
    page = (await sandbox.client.get(path, headers=headers, params={"limit": 1})).json()
    assert [t["name"] for t in page["data"]] == ["first_one"]
    assert page["data"][0]["status"] == "APPROVED"
    after = page["paging"]["cursors"]["after"]
    assert "next" in page["paging"]
    rest = (await sandbox.client.get(path, headers=headers, params={"after": after})).json()
    assert [t["name"] for t in rest["data"]] == ["second_one"] and "next" not in rest["paging"]
    deleted = await sandbox.client.delete(path, headers=headers, params={"name": "first_one"})
    assert deleted.json() == {"success": True}
    remaining = (await sandbox.client.get(path, headers=headers)).json()["data"]
    assert [t["name"] for t in remaining] == ["second_one"]


# --- media ------------------------------------------------------------------------------


async def _upload(
    sandbox: Sandbox, data: bytes, mime: str, *, number: str = NUMBER, token: str = TOKEN
) -> httpx.Response:
    return await sandbox.client.post(
        f"/{VERSION}/{number}/media",
        headers={"authorization": f"Bearer {token}"},
        data={"messaging_product": "whatsapp", "type": mime},
        files={"file": ("upload.bin", data, mime)},
    )


async def test_media_upload_retrieve_download_delete(sandbox: Sandbox) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    uploaded = await _upload(sandbox, PNG, "image/png")
    assert uploaded.status_code == 200, uploaded.text
    media_id = uploaded.json()["id"]
    info = (await sandbox.client.get(f"/{VERSION}/{media_id}", headers=headers)).json()
    assert info == {
        "messaging_product": "whatsapp",
        "url": info["url"],
        "mime_type": "image/png",
        "sha256": hashlib.sha256(PNG).hexdigest(),
        "file_size": len(PNG),
        "id": media_id,
    }
    downloaded = await sandbox.client.get(info["url"], headers=headers)
    assert downloaded.status_code == 200 and downloaded.content == PNG
    assert downloaded.headers["content-type"] == "image/png"
    assert_meta_error(await sandbox.client.get(info["url"]), {190}, 401)
    foreign = await sandbox.client.get(
        info["url"], headers={"authorization": f"Bearer {OTHER_TOKEN}"}
    )
    assert_meta_error(foreign, {10}, 403)
    assert_meta_error(await sandbox.client.get(info["url"] + "0", headers=headers), {100}, 404)

    sent = await sandbox.send(
        _with("image", image={"id": media_id}) | {"messaging_product": "whatsapp", "to": USER}
    )
    assert sent.status_code == 200, sent.text
    deleted = await sandbox.client.delete(f"/{VERSION}/{media_id}", headers=headers)
    assert deleted.json() == {"success": True}
    gone = await sandbox.client.get(f"/{VERSION}/{media_id}", headers=headers)
    assert assert_meta_error(gone, {100})["error_subcode"] == 33


async def test_media_url_expires(make_sandbox: MakeSandbox) -> None:
    sandbox = await make_sandbox(media_url_ttl_seconds=0)
    headers = {"authorization": f"Bearer {TOKEN}"}
    media_id = (await _upload(sandbox, JPEG, "image/jpeg")).json()["id"]
    info = (await sandbox.client.get(f"/{VERSION}/{media_id}", headers=headers)).json()
    await asyncio.sleep(0.01)
    assert_meta_error(await sandbox.client.get(info["url"], headers=headers), {100}, 404)


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b"GIF89a" + b"\x00" * 10, "image/gif"),
        (JPEG + b"\x00" * (5 * 1024 * 1024), "image/jpeg"),
        (PNG, "image/jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * (101 * 1024), "image/webp"),
        (b"OggS" + b"\x00" * 100 + b"Vorbis", "audio/ogg"),
        (b"", "application/pdf"),
    ],
    ids=["gif", "jpeg-over-5mb", "png-as-jpeg", "static-sticker-over-100kb", "ogg-vorbis", "empty"],
)
async def test_media_refused_with_131053(shared: Sandbox, data: bytes, mime: str) -> None:
    assert_meta_error(await _upload(shared, data, mime), {131053})


async def test_media_upload_needs_its_fields(shared: Sandbox) -> None:
    response = await shared.client.post(
        f"/{VERSION}/{NUMBER}/media",
        headers={"authorization": f"Bearer {TOKEN}"},
        files={"file": ("a.png", PNG, "image/png")},
    )
    assert_meta_error(response, {100})


# --- onboarding -------------------------------------------------------------------------


async def test_oauth_code_exchange(sandbox: Sandbox) -> None:
    await sandbox.control("codes", {"code": "c-1", "access_token": "EAAG-new", "waba_id": WABA})
    url = f"/{VERSION}/oauth/access_token"
    good = {"client_id": APP_ID, "client_secret": SECRET, "code": "c-1"}
    exchanged = await sandbox.client.get(url, params=good)
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json() == {"access_token": "EAAG-new", "token_type": "bearer"}
    numbers = await sandbox.client.get(
        f"/{VERSION}/{WABA}/phone_numbers", headers={"authorization": "Bearer EAAG-new"}
    )
    assert [n["id"] for n in numbers.json()["data"]] == [NUMBER]
    assert assert_meta_error(await sandbox.client.get(url, params=good), {100})["error_subcode"]
    assert_meta_error(await sandbox.client.get(url, params=good | {"code": "nope"}), {100})
    assert_meta_error(
        await sandbox.client.get(url, params=good | {"client_secret": "x"}), {190}, 401
    )
    assert_meta_error(await sandbox.client.get(url, params=good | {"client_id": "1"}), {101})


async def test_register_checks_the_pin(make_sandbox: MakeSandbox) -> None:
    sandbox = await make_sandbox(pin="123456")
    headers = {"authorization": f"Bearer {TOKEN}"}
    url = f"/{VERSION}/{NUMBER}/register"
    wrong = await sandbox.client.post(
        url, headers=headers, json={"messaging_product": "whatsapp", "pin": "654321"}
    )
    assert_meta_error(wrong, {133005})
    malformed = await sandbox.client.post(
        url, headers=headers, json={"messaging_product": "whatsapp", "pin": "12"}
    )
    assert_meta_error(malformed, {100})
    right = await sandbox.client.post(
        url, headers=headers, json={"messaging_product": "whatsapp", "pin": "123456"}
    )
    assert right.status_code == 200 and right.json() == {"success": True}
    deregistered = await sandbox.client.post(f"/{VERSION}/{NUMBER}/deregister", headers=headers)
    assert deregistered.json() == {"success": True}
    subscribed = await sandbox.client.post(f"/{VERSION}/{WABA}/subscribed_apps", headers=headers)
    assert subscribed.json() == {"success": True}


async def test_phone_number_fields(shared: Sandbox) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    fields = "display_phone_number,verified_name,quality_rating,name_status,throughput"
    got = await shared.client.get(
        f"/{VERSION}/{NUMBER}", headers=headers, params={"fields": fields}
    )
    assert got.json() == {
        "display_phone_number": "15550783881",
        "verified_name": "Sandbox Business",
        "quality_rating": "GREEN",
        "name_status": "APPROVED",
        "throughput": {"level": "STANDARD"},
        "id": NUMBER,
    }
    bad = await shared.client.get(f"/{VERSION}/{NUMBER}", headers=headers, params={"fields": "x"})
    assert_meta_error(bad, {100})
    listed = await shared.client.get(f"/{VERSION}/{WABA}/phone_numbers", headers=headers)
    assert [n["id"] for n in listed.json()["data"]] == [NUMBER]
    assert_meta_error(
        await shared.client.get(f"/{VERSION}/{OTHER_WABA}/phone_numbers", headers=headers),
        {10},
        403,
    )


# --- control API ------------------------------------------------------------------------


async def test_faults_fail_the_next_sends_then_clear(sandbox: Sandbox) -> None:
    await sandbox.control("faults", {"code": 131000, "times": 2, "phone_number_id": NUMBER})
    await sandbox.control("faults", {"code": 131048, "phone_number_id": OTHER})
    for _ in range(2):
        assert_meta_error(await sandbox.text(), {131000}, 500)
    assert (await sandbox.text()).status_code == 200
    await sandbox.control("faults", {"code": 130429, "http_status": 400})
    assert_meta_error(await sandbox.text(to="16505550001"), {130429}, 400)
    assert (await sandbox.stats())["faults"] == 3


async def test_fault_delay_accepts_then_times_out(sandbox: Sandbox, receiver: Receiver) -> None:
    await sandbox.inbound()
    await sandbox.control("faults", {"delay_seconds": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        await sandbox.client.post(
            f"/{VERSION}/{NUMBER}/messages",
            headers={"authorization": f"Bearer {TOKEN}"},
            json={"messaging_product": "whatsapp", "to": USER, "text": {"body": "x"}},
            timeout=0.2,
        )
    assert (await sandbox.stats())["accepted"] == 1

    def outbound_sent() -> bool:
        return any(
            s.get("status") == "sent"
            for d in receiver.documents()
            for s in d["entry"][0]["changes"][0]["value"].get("statuses", [])
        )

    await receiver.wait(outbound_sent)


async def test_request_log_masks_the_token(sandbox: Sandbox) -> None:
    await sandbox.text()
    await sandbox.client.get(f"/{VERSION}/{NUMBER}")
    log = (await sandbox.client.get("/_sandbox/requests")).json()["data"]
    send, unauthenticated = log
    assert (send["method"], send["path"], send["status"]) == (
        "POST",
        f"/{VERSION}/{NUMBER}/messages",
        200,
    )
    assert send["headers"]["authorization"] == "***"
    assert send["body"]["text"] == {"body": "hello"}
    assert unauthenticated["status"] == 401
    await sandbox.client.delete("/_sandbox/requests")
    assert (await sandbox.client.get("/_sandbox/requests")).json()["data"] == []


async def test_control_api_refuses_bad_set_up(shared: Sandbox) -> None:
    response = await shared.client.post("/_sandbox/numbers", json={"phone_number_id": "1"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    unknown = await shared.client.post(
        "/_sandbox/inbound", json={"phone_number_id": "1", "from": USER, "text": "x"}
    )
    assert unknown.status_code == 404
