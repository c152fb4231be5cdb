"""A loopback web-session gateway that speaks Evolution API v2's HTTP API (../docs: the
contract), for tests and the sandbox: instances with their webhooks, a QR code that a phone
"scans" when told to, messages that customers "write", and a session that can drop.

Under `/evolution` (the gateway's base URL is `<sandbox>/evolution`), the `apikey` header
must be `GatewayState.api_key`. The control API under `/_gateway` drives it: scan, drop,
inbound, rotate the QR, and list what was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import struct
import time
import zlib
from base64 import b64decode, b64encode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "evo-sandbox-key"
PREFIX = "/evolution"


@dataclass(slots=True)
class Instance:
    name: str
    instance_id: str
    webhook_url: str
    webhook_headers: dict[str, str]
    events: list[str]
    number: str | None = None
    state: str = "close"  # open | connecting | close
    qr_count: int = 0
    qr_code: str | None = None
    wuid: str | None = None
    logged_out: bool = False
    fixed_id: str | None = None  # a misbehaving gateway: every send answered with this id


@dataclass(slots=True)
class GatewayState:
    api_key: str = API_KEY
    instances: dict[str, Instance] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)  # every message/* call
    reads: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)  # method, path of every call
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # message id -> file
    http: httpx.AsyncClient | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def post(self, instance: Instance, event: str, data: Any) -> int | None:
        """The webhook of one event, as the gateway posts it; its HTTP status (None: not
        posted, or not reachable)."""
        wanted = event.upper().replace(".", "_").replace("-", "_")
        if instance.events and wanted not in instance.events:
            return None
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=10.0)
        envelope = {
            "event": event,
            "instance": instance.name,
            "data": data,
            "destination": instance.webhook_url,
            # Local time with a misleading Z, to the millisecond (as the gateway sends it).
            "date_time": time.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(time.time() * 1000) % 1000:03d}Z",
            "sender": f"{instance.wuid}@s.whatsapp.net" if instance.wuid else None,
            "server_url": "http://127.0.0.1",
            "apikey": None,
        }
        try:
            answer = await self.http.post(
                instance.webhook_url, json=envelope, headers=instance.webhook_headers
            )
        except httpx.HTTPError:
            return None
        return answer.status_code

    def post_later(self, instance: Instance, event: str, data: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._post(instance, event, data))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, instance: Instance, event: str, data: Any) -> None:
        await self.post(instance, event, data)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.http is not None:
            await self.http.aclose()
            self.http = None


def _error(status: int, message: str | list[Any]) -> JSONResponse:
    names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    body = {
        "status": status,
        "error": names.get(status, "Internal Server Error"),
        "response": {"message": message if isinstance(message, list) else [message]},
    }
    return JSONResponse(body, status_code=status)


def qr_png(code: str, size: int = 29, scale: int = 6) -> str:
    """A QR-looking PNG (a pattern from the code's hash) as a data URL: real image bytes."""
    bits = hashlib.shake_256(code.encode()).digest(size * size // 8 + 1)
    rows = []
    for y in range(size * scale):
        row = bytearray([0])  # filter: none
        for x in range(size * scale):
            i = (y // scale) * size + (x // scale)
            dark = bits[i // 8] >> (i % 8) & 1
            row.append(0 if dark else 255)
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size * scale, size * scale, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    return "data:image/png;base64," + b64encode(png).decode()


Handler = Callable[[Request, GatewayState], Awaitable[Response]]


def _api(
    handler: Handler, *, per_instance: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state: GatewayState = request.app.state.gateway
        state.calls.append({"method": request.method, "path": request.url.path})
        if per_instance and request.path_params.get("instance") not in state.instances:
            name = request.path_params.get("instance")
            return _error(404, f'The "{name}" instance does not exist')
        if request.headers.get("apikey") != state.api_key:
            return _error(401, "Unauthorized")
        return await handler(request, state)

    return endpoint


def _instance(request: Request, state: GatewayState) -> Instance:
    return state.instances[request.path_params["instance"]]


def _qr(instance: Instance) -> dict[str, Any]:
    instance.qr_count += 1
    instance.qr_code = f"2@{secrets.token_urlsafe(24)},{instance.qr_count}"
    pairing = secrets.token_hex(4).upper() if instance.number else None
    return {
        "pairingCode": pairing,
        "code": instance.qr_code,
        "base64": qr_png(instance.qr_code),
        "count": instance.qr_count,
    }


async def create(request: Request, state: GatewayState) -> Response:
    body = await request.json()
    name = body.get("instanceName")
    if not isinstance(name, str) or not name:
        return _error(400, "instanceName is required")
    if body.get("integration") not in ("WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS", "EVOLUTION"):
        return _error(400, "Invalid integration")
    webhook = body.get("webhook") or {}
    if "events" not in webhook:
        return _error(400, "webhook.events is required")  # the contract's trap
    if name in state.instances:
        return _error(403, f'This name "{name}" is already in use.')
    instance = Instance(
        name=name,
        instance_id=secrets.token_hex(16),
        webhook_url=str(webhook.get("url") or ""),
        webhook_headers={str(k): str(v) for k, v in (webhook.get("headers") or {}).items()},
        events=[str(e) for e in webhook.get("events") or []],
        number=body.get("number"),
    )
    state.instances[name] = instance
    answer = {
        "instance": {
            "instanceName": name,
            "instanceId": instance.instance_id,
            "integration": body["integration"],
            "status": "close",
        },
        "hash": body.get("token") or secrets.token_hex(16).upper(),
        "webhook": {"webhookUrl": instance.webhook_url, "webhookByEvents": False},
        "settings": {"groupsIgnore": bool(body.get("groupsIgnore"))},
    }
    return JSONResponse(answer, status_code=201)


async def set_webhook(request: Request, state: GatewayState) -> Response:
    instance = _instance(request, state)
    webhook = (await request.json()).get("webhook") or {}
    if "url" not in webhook or "enabled" not in webhook:
        return _error(400, "webhook.url and webhook.enabled are required")
    instance.webhook_url = str(webhook["url"])
    instance.webhook_headers = {str(k): str(v) for k, v in (webhook.get("headers") or {}).items()}
    instance.events = [str(e) for e in webhook.get("events") or []]
    return JSONResponse({"url": instance.webhook_url, "enabled": True}, status_code=201)


async def connect(request: Request, state: GatewayState) -> Response:
    instance = _instance(request, state)
    if instance.state == "open":
        return JSONResponse({"instance": {"instanceName": instance.name, "state": "open"}})
    instance.number = request.query_params.get("number") or instance.number
    instance.state, instance.logged_out = "connecting", False
    qr = _qr(instance)
    state.post_later(instance, "qrcode.updated", {"qrcode": {"instance": instance.name, **qr}})
    return JSONResponse(qr)


async def connection_state(request: Request, state: GatewayState) -> Response:
    instance = _instance(request, state)
    return JSONResponse({"instance": {"instanceName": instance.name, "state": instance.state}})


async def logout(request: Request, state: GatewayState) -> Response:
    instance = _instance(request, state)
    if instance.state == "close":
        return _error(400, f'The "{instance.name}" instance is not connected')
    instance.state, instance.logged_out, instance.wuid = "close", True, None
    return JSONResponse(
        {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}
    )


async def delete(request: Request, state: GatewayState) -> Response:
    state.instances.pop(request.path_params["instance"])
    return JSONResponse(
        {"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}
    )


async def send(request: Request, state: GatewayState) -> Response:
    instance = _instance(request, state)
    kind = request.path_params["kind"]
    body = await request.json()
    if instance.state != "open":
        return _error(500, "Connection Closed")
    number = str(body.get("number") or "")
    if kind != "sendReaction" and not number:
        return _error(400, ["number is required"])
    if kind == "sendText" and not str(body.get("text") or "").strip():
        return _error(400, ["text is required"])
    message_id = instance.fixed_id or "3EB0" + secrets.token_hex(9).upper()
    jid = number if "@" in number else f"{number}@s.whatsapp.net"
    state.sent.append({"instance": instance.name, "route": kind, "body": body, "id": message_id})
    message = {"conversation": body["text"]} if kind == "sendText" else {kind: body}
    answer = {
        "key": {"remoteJid": jid, "fromMe": True, "id": message_id},
        "pushName": "Você",
        "status": "PENDING",
        "message": message,
        "messageType": "conversation" if kind == "sendText" else kind,
        "messageTimestamp": int(time.time()),
        "instanceId": instance.instance_id,
        "source": "web",
    }
    # The recipient's phone acknowledges a moment later.
    for ack in ("SERVER_ACK", "DELIVERY_ACK"):
        update = {
            "keyId": message_id,
            "remoteJid": jid,
            "fromMe": True,
            "status": ack,
            "instanceId": instance.instance_id,
        }
        state.post_later(instance, "messages.update", update)
    return JSONResponse(answer, status_code=201)


async def mark_read(request: Request, state: GatewayState) -> Response:
    body = await request.json()
    state.reads.append({"instance": request.path_params["instance"], **body})
    return JSONResponse({"message": "Read messages", "read": "success"}, status_code=201)


async def presence(request: Request, state: GatewayState) -> Response:
    body = await request.json()
    return JSONResponse({"presence": body.get("presence")}, status_code=201)


async def media_base64(request: Request, state: GatewayState) -> Response:
    body = await request.json()
    key = (body.get("message") or {}).get("key") or {}
    found = state.media.get(str(key.get("id")))
    if found is None:
        return _error(400, "Message not found")
    content, mime = found
    answer = {"mediaType": "imageMessage", "mimetype": mime, "base64": b64encode(content).decode()}
    return JSONResponse(answer, status_code=201)


# --- control ----------------------------------------------------------------------------------
def _control(
    handler: Callable[[Request, GatewayState, Instance], Awaitable[dict[str, Any]]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state: GatewayState = request.app.state.gateway
        instance = state.instances.get(request.path_params["instance"])
        if instance is None:
            return JSONResponse({"error": "no such instance"}, status_code=404)
        return JSONResponse(await handler(request, state, instance))

    return endpoint


async def scan(request: Request, state: GatewayState, instance: Instance) -> dict[str, Any]:
    """A phone scans the QR code: the session opens as that phone."""
    phone = str((await request.json())["phone"])
    instance.state, instance.wuid = "open", phone
    data = {
        "instance": instance.name,
        "wuid": f"{phone}@s.whatsapp.net",
        "profileName": "Phone " + phone[-4:],
        "state": "open",
        "statusReason": 200,
    }
    return {"webhook_status": await state.post(instance, "connection.update", data)}


async def drop(request: Request, state: GatewayState, instance: Instance) -> dict[str, Any]:
    """The session drops: code 401 is a logout from the phone (a `close` event); `silent`
    drops it without a word, as a dead socket does."""
    body = await request.json()
    code = int(body.get("code", 428))
    instance.state = "close"
    if code == 401:
        instance.logged_out, instance.wuid = True, None
    if body.get("silent"):
        return {"webhook_status": None}
    data = {"instance": instance.name, "state": "close", "statusReason": code}
    return {"webhook_status": await state.post(instance, "connection.update", data)}


async def inbound(request: Request, state: GatewayState, instance: Instance) -> dict[str, Any]:
    """Someone writes: a customer (`from`), the business from its phone (`from_me` to `to`),
    or a member of a group (`group`). Posted `times` times (a redelivery)."""
    body = await request.json()
    message_id = str(body.get("id") or secrets.token_hex(10).upper())
    from_me = bool(body.get("from_me"))
    chat = str(body.get("to") if from_me else body.get("from"))
    key: dict[str, Any] = {"remoteJid": f"{chat}@s.whatsapp.net", "fromMe": from_me}
    if body.get("group"):
        key = {
            "remoteJid": f"{body['group']}@g.us",
            "fromMe": from_me,
            "participant": f"{chat}@s.whatsapp.net",
        }
    if body.get("lid"):
        key["remoteJid"], key["remoteJidAlt"] = f"{body['lid']}@lid", key["remoteJid"]
        key["addressingMode"] = "lid"
    key["id"] = message_id
    message: dict[str, Any] = {"conversation": str(body.get("text") or "")}
    kind = "conversation"
    if body.get("image_base64"):
        content = b64decode(body["image_base64"])
        state.media[message_id] = (content, "image/jpeg")
        message = {"imageMessage": {"mimetype": "image/jpeg", "caption": body.get("text")}}
        kind = "imageMessage"
    data = {
        "key": key,
        "pushName": body.get("name") or ("Business" if from_me else "Customer"),
        "status": "SERVER_ACK" if from_me else "DELIVERY_ACK",
        "message": message,
        "messageType": kind,
        "messageTimestamp": int(time.time()),
        "instanceId": instance.instance_id,
        "source": "android",
    }
    statuses = [
        await state.post(instance, "messages.upsert", data) for _ in range(body.get("times", 1))
    ]
    return {"id": message_id, "webhook_status": statuses[0], "webhook_statuses": statuses}


async def misbehave(request: Request, state: GatewayState, instance: Instance) -> dict[str, Any]:
    instance.fixed_id = (await request.json()).get("fixed_id")
    return {"fixed_id": instance.fixed_id}


async def rotate_qr(request: Request, state: GatewayState, instance: Instance) -> dict[str, Any]:
    qr = _qr(instance)
    status = await state.post(
        instance, "qrcode.updated", {"qrcode": {"instance": instance.name, **qr}}
    )
    return {"qr": qr["code"], "webhook_status": status}


async def listing(request: Request) -> Response:
    state: GatewayState = request.app.state.gateway
    instances = [
        {
            "name": i.name,
            "state": i.state,
            "wuid": i.wuid,
            "webhook_url": i.webhook_url,
            "qr_count": i.qr_count,
            "logged_out": i.logged_out,
        }
        for i in state.instances.values()
    ]
    return JSONResponse(
        {"instances": instances, "sent": state.sent, "reads": state.reads, "calls": state.calls}
    )


def _route(path: str, handler: Handler, method: str, *, per_instance: bool = True) -> Route:
    return Route(PREFIX + path, _api(handler, per_instance=per_instance), methods=[method])


async def webhook_secrets(request: Request) -> Response:
    """Each instance's webhook secret header, as the gateway's database holds it."""
    state: GatewayState = request.app.state.gateway
    return JSONResponse(
        {i.name: i.webhook_headers.get("x-wa-gateway-secret") for i in state.instances.values()}
    )


GATEWAY_ROUTES = [
    _route("/instance/create", create, "POST", per_instance=False),
    _route("/instance/connect/{instance}", connect, "GET"),
    _route("/webhook/set/{instance}", set_webhook, "POST"),
    _route("/instance/connectionState/{instance}", connection_state, "GET"),
    _route("/instance/logout/{instance}", logout, "DELETE"),
    _route("/instance/delete/{instance}", delete, "DELETE"),
    _route("/message/{kind}/{instance}", send, "POST"),
    _route("/chat/markMessageAsRead/{instance}", mark_read, "POST"),
    _route("/chat/sendPresence/{instance}", presence, "POST"),
    _route("/chat/getBase64FromMediaMessage/{instance}", media_base64, "POST"),
    Route("/_gateway", listing, methods=["GET"]),
    Route("/_gateway/secrets", webhook_secrets, methods=["GET"]),
    Route("/_gateway/{instance}/scan", _control(scan), methods=["POST"]),
    Route("/_gateway/{instance}/drop", _control(drop), methods=["POST"]),
    Route("/_gateway/{instance}/inbound", _control(inbound), methods=["POST"]),
    Route("/_gateway/{instance}/qr", _control(rotate_qr), methods=["POST"]),
    Route("/_gateway/{instance}/misbehave", _control(misbehave), methods=["POST"]),
]
