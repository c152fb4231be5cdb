"""Media: upload with Meta's type and size table, retrieval of a short-lived download URL,
the download itself (bearer token required), and deletion."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from wa_cloud import formdata
from wa_cloud.sandbox.errors import GraphError, bad_param, no_permission, no_such_object
from wa_cloud.sandbox.graph import FORM_LIMITS, GraphRequest
from wa_cloud.sandbox.state import Media, new_id

MB = 1024 * 1024
DOWNLOAD_PATH = "/whatsapp_business/attachments/"


@dataclass(frozen=True, slots=True)
class MediaRule:
    kind: str
    max_bytes: int


_DOCUMENT = MediaRule("document", 100 * MB)
RULES: dict[str, MediaRule] = {
    "audio/aac": MediaRule("audio", 16 * MB),
    "audio/amr": MediaRule("audio", 16 * MB),
    "audio/mpeg": MediaRule("audio", 16 * MB),
    "audio/mp4": MediaRule("audio", 16 * MB),
    "audio/ogg": MediaRule("audio", 16 * MB),
    "image/jpeg": MediaRule("image", 5 * MB),
    "image/png": MediaRule("image", 5 * MB),
    "video/mp4": MediaRule("video", 16 * MB),
    "video/3gpp": MediaRule("video", 16 * MB),
    "image/webp": MediaRule("sticker", 500 * 1024),
    "text/plain": _DOCUMENT,
    "application/pdf": _DOCUMENT,
    "application/msword": _DOCUMENT,
    "application/vnd.ms-excel": _DOCUMENT,
    "application/vnd.ms-powerpoint": _DOCUMENT,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": _DOCUMENT,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": _DOCUMENT,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": _DOCUMENT,
}
STATIC_STICKER_BYTES = 100 * 1024


def _looks_like(mime: str, data: bytes) -> bool:
    """Meta inspects the bytes, not only the declared type; the sandbox checks the magic
    numbers of the formats where a wrong file is a common client bug."""
    if mime == "image/jpeg":
        return data.startswith(b"\xff\xd8\xff")
    if mime == "image/png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if mime == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if mime == "audio/ogg":
        # Only OGG with the Opus codec plays as a voice note.
        return data.startswith(b"OggS") and b"OpusHead" in data[:256]
    return True


def check_upload(declared: str, data: bytes) -> str:
    """The canonical MIME type of an acceptable upload, or Meta's 131053."""
    mime = declared.split(";")[0].strip().lower()
    rule = RULES.get(mime)
    if rule is None:
        raise GraphError(131053, f"Unsupported media type: {declared}.")
    if not data:
        raise GraphError(131053, "The uploaded file is empty.")
    limit = rule.max_bytes
    if mime == "image/webp" and b"ANIM" not in data[:4096]:
        limit = STATIC_STICKER_BYTES
    if len(data) > limit:
        raise GraphError(
            131053, f"File of {len(data)} bytes exceeds the {limit} byte limit for {mime}."
        )
    if not _looks_like(mime, data):
        raise GraphError(131053, f"The file content is not {mime}.")
    return mime


async def upload(req: GraphRequest) -> dict[str, Any]:
    number = req.number(req.param("phone_number_id"))
    fault = req.state.take_fault(number.phone_number_id, on="media")
    if fault is not None and fault.code is not None:
        raise GraphError(fault.code, status=fault.http_status)
    if not formdata.is_multipart(req.content_type):
        raise bad_param("Media upload needs a multipart/form-data body.")
    try:
        parts = formdata.parse(req.raw, req.content_type, FORM_LIMITS)
    except formdata.FormError as exc:
        raise bad_param(exc.message) from None
    product = parts.get("messaging_product")
    if product is None:
        raise bad_param("The parameter messaging_product is required.")
    if product.text != "whatsapp":
        raise bad_param('Param messaging_product must be "whatsapp".')
    file = parts.get("file")
    if file is None or file.filename is None:
        raise bad_param("The parameter file is required.")
    declared = parts["type"].text if "type" in parts else file.content_type
    if not declared:
        raise bad_param("The parameter type is required.")
    mime = check_upload(declared, file.data)
    media = Media(
        id=new_id(),
        phone_number_id=number.phone_number_id,
        mime_type=mime,
        sha256=hashlib.sha256(file.data).hexdigest(),
        data=file.data,
        filename=file.filename,
    )
    req.state.media[media.id] = media
    return {"id": media.id}


def _signature(req: GraphRequest, media_id: str, expires: str) -> str:
    return hmac.new(req.state.url_key, f"{media_id}:{expires}".encode(), "sha256").hexdigest()[:32]


def _owned(req: GraphRequest, media: Media) -> Media:
    number = req.state.numbers.get(media.phone_number_id)
    if number is None or req.grant is None or not req.grant.covers_number(number):
        raise no_permission(media.id)
    return media


def describe(req: GraphRequest, media: Media) -> dict[str, Any]:
    _owned(req, media)
    asked = req.query.get("phone_number_id")
    if asked and asked != media.phone_number_id:
        raise bad_param(f"Media {media.id} does not belong to phone number {asked}.")
    expires = str(int(req.state.now() + req.state.config.media_url_ttl_seconds))
    base = str(req.request.base_url).rstrip("/")
    url = (
        f"{base}{DOWNLOAD_PATH}?mid={media.id}&ext={expires}"
        f"&hash={_signature(req, media.id, expires)}"
    )
    return {
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": media.mime_type,
        "sha256": media.sha256,
        "file_size": media.file_size,
        "id": media.id,
    }


def delete(req: GraphRequest, media: Media) -> dict[str, Any]:
    _owned(req, media)
    del req.state.media[media.id]
    return {"success": True}


async def download(req: GraphRequest) -> Response:
    query = req.query
    media_id, expires, given = query.get("mid", ""), query.get("ext", ""), query.get("hash", "")
    gone = GraphError(100, "The media URL is not valid or has expired.", status=404)
    if not hmac.compare_digest(_signature(req, media_id, expires), given):
        raise gone
    if not expires.isdigit() or int(expires) < req.state.now():
        raise gone
    media = req.state.media.get(media_id)
    if media is None:
        raise no_such_object(media_id, "GET")
    _owned(req, media)
    return Response(media.data, media_type=media.mime_type)
