"""`/v1/numbers/{phone_number_id}/files`: the files library the assistant sends from (its
`send_file` tool, ai/files.py).

A file comes as a multipart form (`file`, `title`, `description`?, `type`?) or as JSON naming a
URL we fetch through the URL guard (`url`, `title`, `description`?, `type`?, `filename`?). It is
checked against Meta's media rules when it arrives, as `POST /v1/media` checks an upload, so
`send_file` never meets a file Meta would refuse; it goes to Meta only when first sent. Its
`type` (image, document, video or audio) is what its bytes are, unless given (a photo may go
as a document). Titles are unique per number whatever their case: the model names files by
title.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wa_cloud import formdata
from wa_cloud.ai.files import FILE_KINDS, MAX_DESCRIPTION, MAX_FILES, MAX_TITLE
from wa_cloud.api.auth import require_tenant
from wa_cloud.api.media import MAX_UPLOAD_BODY, MAX_UPLOAD_FILE, read_file_form, safe_filename
from wa_cloud.asgi import field_str, parse_uuid, read_object, reject_unknown
from wa_cloud.canonical import iso
from wa_cloud.db.queries import Q
from wa_cloud.errors import Conflict, NotFound, Unprocessable
from wa_cloud.media.fetch import fetch_url
from wa_cloud.media.rules import (
    GENERIC_TYPES,
    KB,
    MAX_MEDIA_BYTES,
    MB,
    RULES,
    check_media,
    normalise_mime,
    sniff,
)
from wa_cloud.state import AppState
from wa_cloud.tenants import audit

logger = logging.getLogger(__name__)

NOT_YOURS: Final = "No number with that phone_number_id is yours."
# All of a number's files together: they live in the database, a tenant's share of it bounded.
MAX_LIBRARY_BYTES: Final = 250 * MB
_MULTIPART_FIELDS: Final = frozenset({"file", "title", "description", "type"})
_FORM_LIMITS: Final = formdata.FormLimits(
    max_body_bytes=MAX_UPLOAD_BODY,
    max_file_bytes=MAX_UPLOAD_FILE,
    max_parts=len(_MULTIPART_FIELDS),
    max_field_bytes=4 * KB,  # a description of 500 characters, 4 bytes each at most
    allowed_names=_MULTIPART_FIELDS,
)
_JSON_FIELDS: Final = frozenset({"url", "title", "description", "type", "filename"})


@dataclass(frozen=True, slots=True)
class Content:
    data: bytes
    mime_type: str | None  # as declared (checked against the bytes)
    filename: str | None


@dataclass(frozen=True, slots=True)
class NewFile:
    title: str
    description: str
    kind: str | None  # None: what the bytes are
    source: Content | str  # the file itself, or the URL to fetch it from
    filename: str | None = None  # the caller's name for a file fetched by URL


# Reading the request -------------------------------------------------------------------------
async def _read_new_file(request: Request) -> NewFile:
    content_type = request.headers.get("content-type", "")
    if formdata.is_multipart(content_type):
        file, fields = await read_file_form(request, content_type, _FORM_LIMITS)
        return _new_file(fields, Content(file.data, file.content_type, file.filename))
    body = await read_object(request)
    reject_unknown(body, set(_JSON_FIELDS))
    url = field_str(body, "url", max_length=4000)
    filename = field_str(body, "filename", required=False, max_length=200)
    return _new_file(body, url, filename)


def _new_file(
    fields: Mapping[str, Any], source: Content | str, filename: str | None = None
) -> NewFile:
    title = field_str(fields, "title", max_length=MAX_TITLE)
    if not title.isprintable():
        # A title is a line of the model's tool description and a value it must repeat.
        raise Unprocessable("'title' must be one line of printable text.", "invalid_field")
    description = field_str(fields, "description", required=False, max_length=MAX_DESCRIPTION)
    kind = field_str(fields, "type", required=False, max_length=30)
    if kind is not None and kind not in FILE_KINDS:
        raise Unprocessable(
            f"'type' must be one of {', '.join(FILE_KINDS)}.", "unsupported_media_type"
        )
    return NewFile(
        title=title,
        description=" ".join((description or "").split()),  # one line in the tool description
        kind=kind,
        source=source,
        filename=filename,
    )


def file_kind(mime_type: str | None, content: bytes) -> str:
    """What a file goes out as when the caller did not say: an image, video or audio Meta takes
    as such, any other file a document."""
    declared = normalise_mime(mime_type)
    if declared in GENERIC_TYPES:
        declared = sniff(content) or declared
    for kind in ("image", "video", "audio"):
        if declared in RULES[kind].mime_types:
            return kind
    return "document"


async def _with_content(state: AppState, new: NewFile) -> Content:
    if isinstance(new.source, Content):
        return new.source
    limit = RULES[new.kind].max_bytes if new.kind else MAX_MEDIA_BYTES
    fetched = await fetch_url(state.tenant_http, new.source, max_bytes=limit)
    return Content(fetched.content, fetched.mime_type, new.filename or fetched.filename)


async def _check_room(
    conn: asyncpg.Connection, number: str, tenant_id: UUID, title: str, size: int
) -> None:
    usage = await conn.fetchrow(Q.library_usage, number, tenant_id)
    # As send_file matches a title (ai/files.py): two the model could not tell apart are one.
    if any(taken.casefold() == title.casefold() for taken in usage["titles"]):
        raise Conflict(f"The number already has a file titled {title!r}.", "title_taken")
    if usage["files"] >= MAX_FILES:
        raise Unprocessable(f"A number holds at most {MAX_FILES} files.", "library_full")
    if usage["bytes"] + size > MAX_LIBRARY_BYTES:
        raise Unprocessable(
            f"A number's files may take at most {MAX_LIBRARY_BYTES} bytes together.",
            "library_full",
        )


def _shown(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "description": row["description"],
        "type": row["kind"],
        "mime_type": row["mime_type"],
        "filename": row["filename"],
        "size": row["size"],
        "sha256": row["sha256"],
        "created_at": iso(row["created_at"]),
    }


# Routes ----------------------------------------------------------------------------------
async def add_file(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    caller.require_active()
    number = request.path_params["phone_number_id"]
    async with state.pool.acquire() as conn:
        if await conn.fetchval(Q.file_number_exists, number, caller.tenant_id) is None:
            raise NotFound(NOT_YOURS)  # before a byte of the body is read
    with state.upload_slots.hold(caller.tenant_id):
        new = await _read_new_file(request)
        if isinstance(new.source, str):  # before fetching what could not be kept anyway
            async with state.pool.acquire() as conn:
                await _check_room(conn, number, caller.tenant_id, new.title, 0)
        content = await _with_content(state, new)
        data = content.data
        kind = new.kind or file_kind(content.mime_type, data)
        mime_type = check_media(kind, content.mime_type, len(data), data)
        filename = safe_filename(content.filename, mime_type, kind)
        # Up to 100 MB: hashlib lets other threads run while it hashes, so off the event loop.
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        async with state.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(Q.lock_file_number, number, caller.tenant_id) is None:
                raise NotFound(NOT_YOURS)  # removed while the file arrived
            await _check_room(conn, number, caller.tenant_id, new.title, len(data))
            try:
                row = await conn.fetchrow(
                    Q.insert_file,
                    caller.tenant_id,
                    number,
                    new.title,
                    new.description,
                    kind,
                    mime_type,
                    filename,
                    len(data),
                    digest,
                    data,
                )
            except asyncpg.UniqueViolationError:  # (the lock makes this a belt to the braces)
                raise Conflict(
                    f"The number already has a file titled {new.title!r}.", "title_taken"
                ) from None
            await audit.record(
                conn,
                "bot.file_added",
                tenant_id=caller.tenant_id,
                actor=audit.tenant_actor(caller.tenant_id),
                detail={"phone_number_id": number, "file_id": str(row["id"]), "type": kind},
            )
    logger.info(
        "library file added",
        extra={
            "tenant_id": str(caller.tenant_id),
            "phone_number_id": number,
            "kind": kind,
            "size": len(data),
        },
    )
    return JSONResponse(_shown(row), status_code=201)


async def list_files(request: Request) -> JSONResponse:
    state, caller = await require_tenant(request)
    number = request.path_params["phone_number_id"]
    async with state.pool.acquire() as conn:
        if await conn.fetchval(Q.file_number_exists, number, caller.tenant_id) is None:
            raise NotFound(NOT_YOURS)
        rows = await conn.fetch(Q.list_files, number, caller.tenant_id)
    # At most MAX_FILES: one page, always.
    return JSONResponse({"data": [_shown(r) for r in rows], "next": None})


async def delete_file(request: Request) -> Response:
    state, caller = await require_tenant(request)
    caller.require_active()
    number = request.path_params["phone_number_id"]
    file_id = parse_uuid(request.path_params["file_id"])
    await remove_file(state, caller.tenant_id, number, file_id)
    return Response(status_code=204)


async def remove_file(state: AppState, tenant_id: UUID, number: str, file_id: UUID) -> None:
    """Delete a file of the number's library, audited (NotFound: no such file of the tenant's
    number); the API and the console delete files this way. The caller checks the tenant is
    active."""
    async with state.pool.acquire() as conn, conn.transaction():
        deleted = await conn.execute(Q.delete_file, file_id, number, tenant_id)
        if deleted != "DELETE 1":
            raise NotFound("No file with that id on that number.")
        await audit.record(
            conn,
            "bot.file_deleted",
            tenant_id=tenant_id,
            actor=audit.tenant_actor(tenant_id),
            detail={"phone_number_id": number, "file_id": str(file_id)},
        )
