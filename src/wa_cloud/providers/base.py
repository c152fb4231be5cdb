"""The Provider protocol: what a number's transport can do, normalised.

`cloud` is Meta's Cloud API; a web-session gateway implements the same protocol with other
capabilities (no templates, no 24-hour window, a QR lifecycle). Callers ask `capabilities`
instead of checking which provider they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Capabilities:
    templates: bool
    customer_service_window: bool
    groups: bool
    session_lifecycle: bool  # QR / pairing, connect and logout
    read_receipts: bool
    typing_indicator: bool


@dataclass(frozen=True, slots=True)
class MediaFile:
    content: bytes
    mime_type: str
    sha256: str | None


class Provider(Protocol):
    @property
    def capabilities(self) -> Capabilities: ...

    async def send(self, body: Mapping[str, Any]) -> str:
        """Send one message in Meta's send shape; return the provider's message id."""
        ...

    async def mark_read(
        self, message_id: str, *, typing: bool = False, chat: str | None = None
    ) -> None:
        """Read ticks (and typing) for `message_id`, written in the chat with `chat` (the
        contact's wa_id: a web session addresses a read by chat, the Cloud API by id alone)."""
        ...

    async def upload_media(self, content: bytes, mime_type: str, filename: str) -> str: ...

    async def download_media(self, media_id: str, *, max_bytes: int) -> MediaFile: ...

    async def templates(self) -> list[dict[str, Any]]: ...


# A number's provider from its row (`numbers` columns): how every caller gets one.
ProviderFor = Callable[[Mapping[str, Any]], Provider]
