"""Meta's Cloud API as a Provider, for one number and its token."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from wa_cloud.graph.client import GraphClient
from wa_cloud.graph.errors import PermanentGraphError
from wa_cloud.providers.base import Capabilities, MediaFile
from wa_cloud.secretbox import SecretBox
from wa_cloud.tenants import sealed

CLOUD_CAPABILITIES = Capabilities(
    templates=True,
    customer_service_window=True,
    groups=False,
    session_lifecycle=False,
    read_receipts=True,
    typing_indicator=True,
)


def is_media_id(value: str) -> bool:
    """Meta's media ids are digits. Anything else (a URL above all) is never looked up: the
    lookup carries the number's token."""
    return value.isascii() and value.isdigit() and len(value) <= 30


class CloudProvider:
    def __init__(
        self, graph: GraphClient, phone_number_id: str, waba_id: str | None, token: str
    ) -> None:
        self._graph = graph
        self._phone_number_id = phone_number_id
        self._waba_id = waba_id
        self._token = token

    def __repr__(self) -> str:  # the token never shows
        return f"CloudProvider(phone_number_id={self._phone_number_id!r}, token='***')"

    @property
    def capabilities(self) -> Capabilities:
        return CLOUD_CAPABILITIES

    async def send(self, body: Mapping[str, Any]) -> str:
        return await self._graph.send_message(self._phone_number_id, self._token, body)

    async def mark_read(
        self, message_id: str, *, typing: bool = False, chat: str | None = None
    ) -> None:
        await self._graph.mark_read(self._phone_number_id, self._token, message_id, typing=typing)

    async def upload_media(self, content: bytes, mime_type: str, filename: str) -> str:
        return await self._graph.upload_media(
            self._phone_number_id, self._token, content, mime_type, filename
        )

    async def download_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        if not is_media_id(media_id):
            raise PermanentGraphError(f"{media_id[:40]!r} is not a Meta media id")
        # The token goes to the Graph API and to the download URL Meta returned for this id.
        info = await self._graph.media_info(media_id, self._token)
        content = await self._graph.download(str(info["url"]), self._token, max_bytes=max_bytes)
        digest = hashlib.sha256(content).hexdigest()
        expected = info.get("sha256")
        if expected and expected != digest:
            raise PermanentGraphError(f"media {media_id} does not match its sha256")
        return MediaFile(content, str(info.get("mime_type") or ""), digest)

    async def deregister(self) -> None:
        await self._graph.deregister(self._phone_number_id, self._token)

    async def templates(self) -> list[dict[str, Any]]:
        if not self._waba_id:
            return []
        return await self._graph.templates(self._waba_id, self._token)

    # Managing the WABA's templates (templates as code): Cloud API numbers only.
    @property
    def waba_id(self) -> str | None:
        return self._waba_id

    async def create_template(self, template: Mapping[str, Any]) -> dict[str, Any]:
        return await self._graph.create_template(str(self._waba_id), self._token, template)

    async def edit_template(self, template_id: str, change: Mapping[str, Any]) -> None:
        await self._graph.edit_template(template_id, self._token, change)

    async def delete_template(self, name: str, hsm_id: str) -> None:
        await self._graph.delete_template(str(self._waba_id), self._token, name, hsm_id)


def cloud_provider(graph: GraphClient, box: SecretBox, number: Mapping[str, Any]) -> CloudProvider:
    """The provider of a number row (`phone_number_id`, `access_token_enc`, `waba_id`?); the
    token is unsealed here, only when a call is about to be made."""
    pnid = str(number["phone_number_id"])
    token = box.open(number["access_token_enc"], context=sealed.NUMBER_TOKEN.context(pnid))
    return CloudProvider(graph, pnid, number.get("waba_id"), token)
