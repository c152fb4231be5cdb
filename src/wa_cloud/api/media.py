"""`POST /v1/media` (upload to Meta through the number's provider) and `GET /v1/media/{id}`
(the bytes of an inbound media file we downloaded and kept).

An upload is checked against Meta's table before any Graph call: a wrong type, a file too large
or bytes that contradict the declared type are a 422 here, not a 131053 from Meta later.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wa_cloud import formdata
from wa_cloud.api.auth import require_tenant
from wa_cloud.asgi import (
    field_bool,
    field_str,
    read_object,
    reject_unknown,
)
from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError, Conflict, NotFound, PayloadTooLarge, Unprocessable
from wa_cloud.graph.errors import GraphError
from wa_cloud.media.fetch import fetch_url
from wa_cloud.media.rules import KB, MAX_MEDIA_BYTES, MB, check_media, normalise_mime, rule_for
from wa_cloud.media.voice import AudioConversionError, to_voice_note
from wa_cloud.providers.base import Provider
from wa_cloud.providers.numbers import request_providers
from wa_cloud.state import AppState

logger = logging.getLogger(__name__)

# The largest file Meta takes (a 100 MB document) and room for the multipart framing.
MAX_UPLOAD_BODY: Final = MAX_MEDIA_BYTES + MB
# A file a little over Meta's largest is still read, so it gets the 422 that names the type's
# limit like any file too large for its type; past this margin it is refused unread (413).
MAX_UPLOAD_FILE: Final = MAX_MEDIA_BYTES + MB // 2
# Audio to be converted may be larger than the 16 MB Opus it becomes (e.g. WAV), within reason.
MAX_VOICE_INPUT: Final = 50 * MB
_MULTIPART_FIELDS: Final = frozenset({"file", "type", "from", "voice"})
# One part per field; `from`, `type` and `voice` are short (a phone number id, a word, a bool).
_FORM_LIMITS: Final = formdata.FormLimits(
    max_body_bytes=MAX_UPLOAD_BODY,
    max_file_bytes=MAX_UPLOAD_FILE,
    max_parts=len(_MULTIPART_FIELDS),
    max_field_bytes=KB,
    allowed_names=_MULTIPART_FIELDS,
)
_JSON_FIELDS: Final = frozenset({"from", "type", "url", "voice", "filename"})
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})
_EXTENSIONS: Final = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "audio/ogg": ".ogg",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/aac": ".aac",
    "audio/amr": ".amr",
    "video/mp4": ".mp4",
    "video/3gpp": ".3gp",
    "application/pdf": ".pdf",
}


@dataclass(frozen=True, slots=True)
class File:
    content: bytes
    mime_type: str | None  # as declared (checked against the bytes before it goes to Meta)
    filename: str | None


@dataclass(frozen=True, slots=True)
class Upload:
    sender: str
    kind: str
    voice: bool
    source: File | str  # the file itself, or the URL to fetch it from
    filename: str | None = None  # the caller's name for a file fetched by URL


class GraphUnavailableError(ApiError):
    def __init__(self) -> None:
        super().__init__(503, "graph_unavailable", "Meta's Graph API is not answering; retry.")


# Reading the request -------------------------------------------------------------------------
async def _read_upload(request: Request) -> Upload:
    content_type = request.headers.get("content-type", "")
    if formdata.is_multipart(content_type):
        return await _read_multipart(request, content_type)
    body = await read_object(request)
    reject_unknown(body, set(_JSON_FIELDS))
    url = field_str(body, "url", max_length=4000)
    return Upload(
        sender=_sender(body),
        kind=_kind(body),
        voice=bool(field_bool(body, "voice")),
        source=url,
        filename=field_str(body, "filename", required=False, max_length=200),
    )


async def read_file_form(
    request: Request, content_type: str, limits: formdata.FormLimits
) -> tuple[formdata.Part, dict[str, str]]:
    """A multipart upload's `file` part and its other fields as text."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise PayloadTooLarge(limits.max_body_bytes)  # refused before a byte is read
    # Parsed as it arrives, on the loop (about 1 ms of CPU per MB): a part past the count or
    # a field or file past its size is refused when its bytes arrive, not after the whole body.
    parts = await formdata.read_form(request.stream(), content_type, limits)
    file = parts.get("file")
    if file is None:
        raise Unprocessable("'file' is required.", "missing_field")
    return file, {name: part.text for name, part in parts.items() if name != "file"}


async def _read_multipart(request: Request, content_type: str) -> Upload:
    file, fields = await read_file_form(request, content_type, _FORM_LIMITS)
    return Upload(
        sender=_sender(fields),
        kind=_kind(fields),
        voice=_form_bool(fields, "voice"),
        source=File(file.data, file.content_type, file.filename),
    )


def _sender(fields: Mapping[str, Any]) -> str:
    return field_str(fields, "from", max_length=30)


def _kind(fields: Mapping[str, Any]) -> str:
    kind = field_str(fields, "type", max_length=30)
    rule_for(kind)  # an unknown type is refused before anything is read or fetched
    return kind


def _form_bool(fields: Mapping[str, str], name: str) -> bool:
    value = fields.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise Unprocessable(f"'{name}' must be true or false.", "invalid_field")


def safe_filename(given: str | None, mime_type: str, kind: str) -> str:
    """A file's name as it goes to Meta (and api/files.py keeps it): only the last path segment
    of what the client named, printable, and never empty."""
    name = os.path.basename((given or "").replace("\\", "/"))
    name = "".join(c for c in name if c.isprintable())[:200]
    return name or kind + _EXTENSIONS.get(mime_type, "")


# Getting the bytes ready -------------------------------------------------------------------
async def _with_content(state: AppState, upload: Upload) -> File:
    limit = MAX_VOICE_INPUT if upload.voice else rule_for(upload.kind).max_bytes
    if isinstance(upload.source, File):
        if upload.voice and len(upload.source.content) > limit:
            raise Unprocessable(
                f"Audio to convert may be at most {limit} bytes.", "media_too_large"
            )
        return upload.source
    fetched = await fetch_url(state.tenant_http, upload.source, max_bytes=limit)
    return File(fetched.content, fetched.mime_type, upload.filename or fetched.filename)


async def _as_voice_note(file: File) -> File:
    try:
        # ffmpeg runs for a while on long audio: in a thread, so the loop keeps serving.
        converted = await asyncio.to_thread(to_voice_note, file.content)
    except AudioConversionError as exc:
        raise Unprocessable(
            f"The audio could not be converted to a voice note: {exc}", "unsupported_media_type"
        ) from exc
    return File(converted, "audio/ogg", "voice.ogg")


async def _send_to_meta(provider: Provider, content: bytes, mime_type: str, filename: str) -> str:
    try:
        return await provider.upload_media(content, mime_type, filename)
    except GraphError as exc:
        if exc.retryable:
            raise GraphUnavailableError() from exc
        raise Unprocessable(
            f"Meta refused the media: {exc.details or exc.message}", "media_upload_failed"
        ) from exc


@dataclass(frozen=True, slots=True)
class Uploaded:
    """A file Meta took: its media id to send with, and the bytes as they went."""

    media_id: str
    mime_type: str
    sha256: str
    filename: str
    content: bytes


async def upload_to_meta(state: AppState, tenant_id: UUID, upload: Upload) -> Uploaded:
    """An upload as `POST /v1/media` makes it (the console's attachments too): the sender
    checked as the tenant's (404), the bytes fetched or converted, checked against Meta's
    rules (422), then uploaded through the number's provider. Callers hold an upload slot."""
    if upload.voice and upload.kind != "audio":
        raise Unprocessable("'voice' applies to audio only.", "invalid_field")
    async with state.pool.acquire() as conn:
        number = await conn.fetchrow(Q.sender_number, upload.sender, tenant_id)
    if number is None:
        raise NotFound("No number with that phone_number_id is yours.")
    file = await _with_content(state, upload)
    if upload.voice:
        file = await _as_voice_note(file)
    content = file.content
    mime_type = check_media(upload.kind, file.mime_type, len(content), content)
    filename = safe_filename(file.filename, mime_type, upload.kind)
    provider = request_providers(state.graph, state.tenant_http, state.box)(number)
    media_id = await _send_to_meta(provider, content, mime_type, filename)
    # Up to 100 MB: hashlib lets other threads run while it hashes, so off the event loop.
    digest = await asyncio.to_thread(lambda: hashlib.sha256(content).hexdigest())
    logger.info(
        "media uploaded",
        extra={
            "tenant_id": str(tenant_id),
            "phone_number_id": upload.sender,
            "kind": upload.kind,
            "size": len(content),
        },
    )
    return Uploaded(media_id, mime_type, digest, filename, content)


# Routes ----------------------------------------------------------------------------------
async def upload_media(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    with state.upload_slots.hold(caller.tenant_id):
        uploaded = await upload_to_meta(state, caller.tenant_id, await _read_upload(request))
    return JSONResponse(
        {
            "id": uploaded.media_id,
            "mime_type": uploaded.mime_type,
            "sha256": uploaded.sha256,
            "size": len(uploaded.content),
        },
        status_code=201,
    )


async def get_media(request: Request) -> Response:
    state, caller = await require_tenant(request)
    media_id = str(request.path_params["media_id"])
    if len(media_id) > 255 or "\x00" in media_id:
        raise NotFound("No media with that id.")
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow(Q.tenant_media, caller.tenant_id, media_id)
    return media_response(row)


# Shown in the browser (the console's thumbnails and players); anything else is downloaded.
INLINE_TYPES: Final = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/gif"}
    | {"audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr"}
    | {"video/mp4", "video/3gpp"}
)


def media_response(
    row: Mapping[str, Any] | None,
    *,
    inline: bool = False,
    filename: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A stored media row (`state`, `mime_type`, `sha256`, `content`, `last_error`) as its
    bytes: 404 without a row, 409 while it downloads or when it could not be. `inline` lets
    the browser show an image, audio or video (only those types)."""
    if row is None:
        raise NotFound("No media with that id.")
    if row["state"] == "pending":
        raise Conflict("The media has not been downloaded from Meta yet.", "media_pending")
    if row["state"] == "failed":
        raise Conflict(f"The media could not be downloaded: {row['last_error']}", "media_failed")
    mime_type = row["mime_type"] or "application/octet-stream"
    # The bytes come from a customer: never let a browser render them as a page.
    disposition = "inline" if inline and normalise_mime(mime_type) in INLINE_TYPES else "attachment"
    if filename:
        disposition += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return Response(
        bytes(row["content"]),
        media_type=mime_type,
        headers={
            **(headers or {}),
            "content-disposition": disposition,
            "x-content-type-options": "nosniff",
            "etag": f'"{row["sha256"]}"',
        },
    )
