"""A WhatsApp-Web session through an Evolution API v2 gateway, as a Provider.

The gateway runs the session (we run no browser); this module speaks its HTTP API: the
instance's lifecycle (`Gateway`) and sending in Meta's send shape (`WebSessionProvider`).
Every number has its own instance, named from its id plus a random suffix, so no two
registrations (of one tenant or two) ever share a session. The gateway's URL is the tenant's,
so every call goes through the URL guard's client; its API key travels in the `apikey` header
and nowhere else.

Gateway errors map onto the Graph error classes the sender already knows: a network failure
or a 5xx is transient, a refusal (400, 401, 404) permanent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

import httpx

from wa_cloud.graph.errors import (
    AuthenticationFailed,
    GraphError,
    GraphUnavailable,
    InvalidParameter,
    PermanentGraphError,
    SendOutcomeUnknown,
    Undeliverable,
    UnsupportedMedia,
)
from wa_cloud.providers.base import Capabilities, MediaFile

WEBSESSION_CAPABILITIES = Capabilities(
    templates=False,
    customer_service_window=False,
    groups=True,
    session_lifecycle=True,
    read_receipts=True,
    typing_indicator=True,
)

# The header our webhook secret travels in: set on the instance's webhook, checked on receipt.
SECRET_HEADER = "x-wa-gateway-secret"
# What the gateway posts to us; `send.message` is left out: our own sends we know already.
WEBHOOK_EVENTS = ("QRCODE_UPDATED", "CONNECTION_UPDATE", "MESSAGES_UPSERT", "MESSAGES_UPDATE")
# Web sessions get banned for bursts: one message a second per number unless the tenant sets
# otherwise (the pair pace per recipient applies as for Cloud API numbers).
DEFAULT_THROUGHPUT_MPS = 1
_MEDIA_TYPES = ("image", "video", "document", "audio")
CALL_SECONDS = 30.0  # one gateway call, whole (the client's timeouts are per read)
MAX_ANSWER_BYTES = (
    24 * 1024 * 1024
)  # media as base64 (Meta's largest inbound, 16 MB, and then some)


def new_instance_name(phone_number_id: str) -> str:
    return f"wa-{phone_number_id}-{secrets.token_hex(4)}"


def new_webhook_secret() -> tuple[str, bytes]:
    """A secret for the instance's webhook header, and the hash we keep of it."""
    secret = secrets.token_urlsafe(32)
    return secret, secret_hash(secret)


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def jid_digits(jid: str | None) -> str | None:
    """`5511...@s.whatsapp.net` -> `5511...`; None for anything that is not a phone JID."""
    if not jid or not jid.endswith("@s.whatsapp.net"):
        return None
    user = jid.split("@", 1)[0].split(":", 1)[0]  # a device suffix (`:12`) is not the phone
    return user if user.isdigit() else None


def chat_jid(to: str) -> str:
    """A recipient as the gateway takes it: digits, or a full JID kept as given."""
    return to if "@" in to else f"{to}@s.whatsapp.net"


class Gateway:
    """One instance's calls on one gateway."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str, instance: str):
        self._http = http
        self._base = base_url.rstrip("/")
        self._key = api_key
        self.instance = instance

    def __repr__(self) -> str:  # the key never shows
        return f"Gateway(base_url={self._base!r}, instance={self.instance!r}, api_key='***')"

    async def call(
        self,
        method: str,
        route: str,
        body: Mapping[str, Any] | None = None,
        *,
        send: bool = False,
        params: Mapping[str, str] | None = None,
        per_instance: bool = True,
    ) -> Any:
        """One call; `send` marks a message send, whose outcome is unknown after a timeout."""
        url = f"{self._base}/{route}/{self.instance}" if per_instance else f"{self._base}/{route}"
        try:
            # A whole-call deadline and a size cap: a gateway that drips bytes or answers
            # without end (it is a tenant's) holds one call, never a worker.
            async with asyncio.timeout(CALL_SECONDS):
                status, content = await self._request(method, url, body, params)
        except (TimeoutError, httpx.TimeoutException) as exc:
            if send:
                raise SendOutcomeUnknown("the gateway did not answer the send in time") from exc
            raise GraphUnavailable("the gateway did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise GraphUnavailable(f"the gateway is unreachable: {type(exc).__name__}") from exc
        try:
            payload: Any = json.loads(content) if content else None
        except ValueError:
            payload = None
        if status >= 500 or status == 429:
            raise GraphUnavailable(f"the gateway answered {status}", http_status=status)
        if status >= 400:
            raise _refusal(status, payload)
        if isinstance(payload, Mapping) and payload.get("error") is True:
            # connect and restart answer their own failures with a 200 (the contract's trap).
            raise PermanentGraphError(
                f"the gateway refused: {_message(payload)}", http_status=status
            )
        return payload

    async def _request(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> tuple[int, bytes]:
        headers = {"apikey": self._key}
        async with self._http.stream(
            method, url, json=body, params=params, headers=headers
        ) as response:
            content = bytearray()
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > MAX_ANSWER_BYTES:
                    raise PermanentGraphError(f"the gateway answered more than {MAX_ANSWER_BYTES}")
            return response.status_code, bytes(content)

    async def create(self, webhook_url: str, secret: str) -> Mapping[str, Any]:
        """The instance, with our webhook (its secret in a header) and no QR yet: `connect`
        asks for one."""
        body = {
            "instanceName": self.instance,
            "integration": "WHATSAPP-BAILEYS",
            "qrcode": False,
            "groupsIgnore": False,
            "alwaysOnline": False,
            "readMessages": False,
            "readStatus": False,
            "syncFullHistory": False,
            "rejectCall": False,
            "webhook": _webhook(webhook_url, secret),
        }
        payload = await self.call("POST", "instance/create", body, per_instance=False)
        return payload if isinstance(payload, Mapping) else {}

    async def set_webhook(self, webhook_url: str, secret: str) -> None:
        await self.call("POST", "webhook/set", {"webhook": _webhook(webhook_url, secret)})

    async def connect(self, number: str | None) -> Mapping[str, Any]:
        """Start (or look at) the session: its QR and pairing code while it waits for a scan
        (`{"count": 0}`: none yet, one comes as `qrcode.updated`)."""
        params = {"number": number} if number else None
        payload = await self.call("GET", "instance/connect", params=params)
        return payload if isinstance(payload, Mapping) else {}

    async def state(self) -> str | None:
        """`open`, `connecting` or `close` as the gateway holds it now; None when unknown."""
        payload = await self.call("GET", "instance/connectionState")
        instance = payload.get("instance") if isinstance(payload, Mapping) else None
        state = instance.get("state") if isinstance(instance, Mapping) else None
        return state if isinstance(state, str) else None

    async def logout(self) -> None:
        # "Not connected" (400) is logged out already (2.4 answers 200 instead).
        with contextlib.suppress(InvalidParameter):
            await self.call("DELETE", "instance/logout")

    async def delete(self) -> None:
        with contextlib.suppress(Undeliverable):  # no such instance: deleted already
            await self.call("DELETE", "instance/delete")


def _webhook(url: str, secret: str) -> dict[str, Any]:
    return {
        "enabled": True,
        "url": url,
        "byEvents": False,
        "base64": False,
        "headers": {SECRET_HEADER: secret},
        # Always given: without it the gateway fails the call (the contract's trap).
        "events": list(WEBHOOK_EVENTS),
    }


def _message(payload: Any) -> str:
    if not isinstance(payload, Mapping):
        return "no reason given"
    response = payload.get("response")
    found = response.get("message") if isinstance(response, Mapping) else payload.get("message")
    if isinstance(found, list):
        found = "; ".join(str(m) for m in found[:3])
    return str(found or payload.get("error") or "no reason given")[:300]


def _refusal(status: int, payload: Any) -> GraphError:
    message = f"the gateway refused ({status}): {_message(payload)}"
    if status in (401, 403):
        return AuthenticationFailed(message, http_status=status)
    if status == 404:
        return Undeliverable(message, http_status=status)
    return InvalidParameter(message, http_status=status)


class WebSessionProvider:
    """A web-session number's sends, reads and media, in the Provider protocol's terms."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def __repr__(self) -> str:
        return f"WebSessionProvider({self._gateway!r})"

    @property
    def capabilities(self) -> Capabilities:
        return WEBSESSION_CAPABILITIES

    async def send(self, body: Mapping[str, Any]) -> str:
        route, request = gateway_request(body)
        answer = await self._gateway.call("POST", route, request, send=True)
        key = answer.get("key") if isinstance(answer, Mapping) else None
        message_id = key.get("id") if isinstance(key, Mapping) else None
        if not isinstance(message_id, str) or not message_id:
            raise SendOutcomeUnknown("the gateway's answer has no message key")
        return message_id

    async def mark_read(
        self, message_id: str, *, typing: bool = False, chat: str | None = None
    ) -> None:
        if chat is None:
            return  # the gateway needs the chat of the message
        jid = chat_jid(chat)
        await self._gateway.call(
            "POST",
            "chat/markMessageAsRead",
            {"readMessages": [{"remoteJid": jid, "fromMe": False, "id": message_id}]},
        )
        if typing:
            # Short: the call blocks for the delay, and the reply follows anyway.
            await self._gateway.call(
                "POST",
                "chat/sendPresence",
                {"number": jid.split("@", 1)[0], "presence": "composing", "delay": 1000},
            )

    async def upload_media(self, content: bytes, mime_type: str, filename: str) -> str:
        raise UnsupportedMedia("a web session takes media by link, not by upload")

    async def download_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        answer = await self._gateway.call(
            "POST",
            "chat/getBase64FromMediaMessage",
            {"message": {"key": {"id": media_id}}, "convertToMp4": False},
        )
        if not isinstance(answer, Mapping) or not isinstance(answer.get("base64"), str):
            raise PermanentGraphError("the gateway returned no media for that message")
        encoded: str = answer["base64"]
        if len(encoded) * 3 // 4 > max_bytes:
            raise UnsupportedMedia(f"the media is larger than {max_bytes} bytes")
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise PermanentGraphError("the gateway's media is not base64") from None
        mime = str(answer.get("mimetype") or "")
        return MediaFile(content, mime, hashlib.sha256(content).hexdigest())

    async def templates(self) -> list[dict[str, Any]]:
        return []  # web sessions have no templates


def gateway_request(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A send in Meta's shape as the gateway's route and body. What a web session cannot send
    (templates, interactive messages) is refused for good, never sent as something else."""
    to = str(body.get("to") or body.get("recipient") or "")
    if not to:
        raise InvalidParameter("the message has no recipient")
    kind = body.get("type", "text")
    content = body.get(kind) if isinstance(kind, str) else None
    content = content if isinstance(content, Mapping) else {}
    context = body.get("context")
    quoted = None
    if isinstance(context, Mapping) and isinstance(context.get("message_id"), str):
        quoted = {"key": {"id": context["message_id"]}}
    request: dict[str, Any] = {"number": to}
    if kind == "text":
        request["text"] = str(content.get("body") or "")
        if content.get("preview_url") is False:
            request["linkPreview"] = False
        route = "message/sendText"
    elif kind == "audio" and content.get("link"):
        request["audio"] = str(content["link"])  # a voice note: the gateway makes it OGG/Opus
        route = "message/sendWhatsAppAudio"
    elif kind in _MEDIA_TYPES:
        if not content.get("link"):
            raise UnsupportedMedia("a web session sends media by link, not by media id")
        request.update(mediatype=kind, media=str(content["link"]))
        if content.get("caption"):
            request["caption"] = str(content["caption"])
        if content.get("filename"):
            request["fileName"] = str(content["filename"])
        route = "message/sendMedia"
    elif kind == "reaction":
        target = content.get("message_id")
        if not isinstance(target, str):
            raise InvalidParameter("a reaction needs the message_id it reacts to")
        key = {"id": target, "remoteJid": chat_jid(to), "fromMe": False}
        return "message/sendReaction", {"key": key, "reaction": str(content.get("emoji") or "")}
    elif kind == "location":
        request.update(
            latitude=content.get("latitude"),
            longitude=content.get("longitude"),
            name=str(content.get("name") or ""),
            address=str(content.get("address") or ""),
        )
        route = "message/sendLocation"
    else:
        raise InvalidParameter(f"a web session cannot send a {kind!r} message")
    if quoted is not None:
        request["quoted"] = quoted
    return route, request
