"""The files library as the assistant sees it: the built-in `send_file` tool.

A number's files (api/files.py stores them) are offered to the model as one function whose only
argument is a title from an enum, the descriptions in the function's description. A call queues
the file as an image, document, video or audio message of the reply, beside its text, through
the outbox. The bytes go to Meta once: the media id is kept on the file and reused while Meta
still has it (it keeps uploaded media 30 days; we stop reusing well before). The same file asked
twice in one reply goes once. An unknown title, a failed upload or a database away are results
the model reads (`{"error"}`), as any tool's failure: a file never crashes a reply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg

from wa_cloud.ai.tools import ToolCall, parse_arguments
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q
from wa_cloud.providers.base import Provider

logger = logging.getLogger(__name__)

SEND_FILE: Final = "send_file"
FILE_KINDS: Final = ("image", "document", "video", "audio")  # what a file may go out as
MAX_FILES: Final = 25  # per number: every file is in the tool's description of every reply
MAX_TITLE: Final = 100
MAX_DESCRIPTION: Final = 500
# Meta keeps an uploaded media 30 days; a queued message may wait a while in the outbox, so a
# kept id is reused only while it is younger than this.
MEDIA_ID_REUSE: Final = timedelta(days=25)

# One message of the reply: (type, Meta's object for that type, the text the history keeps).
MediaPart = tuple[str, dict[str, Any], str | None]
# A filename shown bare in the tool's description; any other is shown as a JSON string (one
# fetched by URL is named by the URL's path: a quote there must not close our own quotes).
_PLAIN_FILENAME: Final = re.compile(r"[\w .+-]{1,200}")


@dataclass(frozen=True, slots=True)
class LibraryFile:
    """A file as the model is told of it (never its bytes)."""

    id: UUID
    title: str
    description: str
    kind: str
    filename: str


async def library(
    conn: asyncpg.Connection, tenant_id: UUID, phone_number_id: str
) -> list[LibraryFile]:
    rows = await conn.fetch(Q.list_files, phone_number_id, tenant_id)
    return [
        LibraryFile(r["id"], r["title"], r["description"], r["kind"], r["filename"]) for r in rows
    ]


class FileRefused(Exception):
    """Why a file was not queued, said to the model as the call's result."""


class FileSender:
    """One reply's `send_file`: its definition for the model, its calls, and the media messages
    they queued (`parts`, in the order the calls were made)."""

    name: Final = SEND_FILE

    def __init__(
        self,
        pool: asyncpg.Pool,
        provider: Provider | None,
        tenant_id: UUID,
        phone_number_id: str,
        files: Sequence[LibraryFile],
    ) -> None:
        self._pool = pool
        self._provider = provider
        self._tenant_id = tenant_id
        self._number = phone_number_id
        self._files = list(files)
        # A slot per file asked for, taken before its upload: a second call for the same file
        # (in the same round too) finds it taken; a failed upload frees it.
        self._slots: dict[UUID, MediaPart | None] = {}
        # A round's calls run at once; their files' bytes are read and uploaded one at a time,
        # so a reply holds one file in memory (100 MB at most), not the whole library (250 MB).
        self._one_at_a_time = asyncio.Lock()

    @property
    def parts(self) -> list[MediaPart]:
        return [part for part in self._slots.values() if part is not None]

    def spec(self) -> tuple[str, str, Mapping[str, Any]]:
        # Titles as JSON strings: a title's own quote must not close ours (its line is ours).
        listed = "\n".join(
            f"- {json.dumps(f.title, ensure_ascii=False)} ({f.kind}"
            + (f", {_shown_filename(f.filename)}" if f.kind == "document" else "")
            + ")"
            + (f": {f.description}" if f.description else "")
            for f in self._files
        )
        description = (
            "Send the customer one of the business's files; it goes out with your answer. "
            "Send a file only when it answers what the customer asked. The files:\n" + listed
        )
        parameters = {
            "type": "object",
            "properties": {
                "title": {
                    "type": "string",
                    "enum": [f.title for f in self._files],
                    "description": "The title of the file to send.",
                }
            },
            "required": ["title"],
            "additionalProperties": False,
        }
        return SEND_FILE, description, parameters

    async def call(self, raw_arguments: str | None, seconds_left: float) -> ToolCall:
        arguments = parse_arguments(raw_arguments)
        call = ToolCall(SEND_FILE, arguments or {})
        started = time.perf_counter()
        try:
            if arguments is None:
                raise FileRefused("the arguments were not a JSON object")
            call.result = json.dumps(
                await self._queue(self._find(arguments.get("title")), seconds_left),
                ensure_ascii=False,
            )
        except FileRefused as exc:
            call.error = str(exc)
            call.result = json.dumps({"error": call.error}, ensure_ascii=False)
        finally:
            call.duration_ms = int((time.perf_counter() - started) * 1000)
        return call

    def _find(self, title: Any) -> LibraryFile:
        if isinstance(title, str):
            # The title as offered first (an enum value), then whatever its case: titles are
            # unique by casefold (api/files.py), older ones only by PostgreSQL's lower().
            wanted = title.strip()
            for file in self._files:
                if file.title == wanted:
                    return file
            for file in self._files:
                if file.title.casefold() == wanted.casefold():
                    return file
        known = ", ".join(json.dumps(f.title, ensure_ascii=False) for f in self._files)
        shown = json.dumps(title if isinstance(title, str) else None, ensure_ascii=False)[:120]
        raise FileRefused(f"there is no file titled {shown}; the files are: {known}")

    async def _queue(self, file: LibraryFile, seconds_left: float) -> dict[str, Any]:
        queued = {"queued": True, "title": file.title, "type": file.kind}
        if file.id in self._slots:
            return {**queued, "note": "already queued in this answer: it goes once"}
        self._slots[file.id] = None
        try:
            started = time.monotonic()
            async with asyncio.timeout(max(seconds_left, 0.0)):
                await self._one_at_a_time.acquire()
            try:
                media_id = await self._media_id(file, seconds_left - (time.monotonic() - started))
            finally:
                self._one_at_a_time.release()
        except TimeoutError:
            del self._slots[file.id]
            raise FileRefused("no time was left to upload it") from None
        except BaseException:
            del self._slots[file.id]
            raise
        body: dict[str, Any] = {"id": media_id}
        if file.kind == "document":
            body["filename"] = file.filename  # what the customer's phone shows and saves
        self._slots[file.id] = (file.kind, body, f"[{file.kind}: {file.title}]")
        return {**queued, "note": "it goes out with your answer"}

    async def _media_id(self, file: LibraryFile, seconds_left: float) -> str:
        """Meta's media id of the file: the kept one while it is fresh, else uploaded now (no
        pooled connection is held while Meta is asked)."""
        try:
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow(
                    Q.file_to_send,
                    file.id,
                    self._number,
                    self._tenant_id,
                    MEDIA_ID_REUSE.total_seconds(),
                )
        except DATABASE_ERRORS as exc:
            raise FileRefused("the file cannot be read right now") from exc
        if row is None:
            raise FileRefused("the file was deleted")
        if row["media_id"] is not None:
            return str(row["media_id"])
        media_id = await self._upload(file, row, seconds_left)
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(
                    Q.keep_file_media_id, file.id, self._tenant_id, row["sha256"], media_id
                )
        except DATABASE_ERRORS:
            # Sent all the same; the next reply only uploads it again.
            logger.warning("file media id not kept", extra={"file_id": str(file.id)})
        return media_id

    async def _upload(self, file: LibraryFile, row: asyncpg.Record, seconds_left: float) -> str:
        if self._provider is None:
            raise FileRefused("this number cannot send files right now")
        content = bytes(row["content"])
        try:
            async with asyncio.timeout(max(seconds_left, 0.0)):
                media_id = await self._provider.upload_media(
                    content, row["mime_type"], row["filename"]
                )
        except TimeoutError:
            raise FileRefused(f"the upload took longer than {seconds_left:.0f} s") from None
        except Exception as exc:  # any provider failure is the model's to hear, not a crash
            logger.warning(
                "file upload failed", extra={"file_id": str(file.id), "error": type(exc).__name__}
            )
            raise FileRefused("the file could not be uploaded to WhatsApp") from None
        logger.info(
            "file uploaded",
            extra={
                "tenant_id": str(self._tenant_id),
                "phone_number_id": self._number,
                "file_id": str(file.id),
                "size": len(content),
            },
        )
        return media_id


def _shown_filename(filename: str) -> str:
    if _PLAIN_FILENAME.fullmatch(filename):
        return filename
    return json.dumps(filename, ensure_ascii=False)


async def file_sender(
    pool: asyncpg.Pool, provider: Provider | None, tenant_id: UUID, phone_number_id: str
) -> FileSender | None:
    """The reply's `send_file`, or None when the number has no files (no tool is offered)."""
    async with pool.acquire() as conn:
        files = await library(conn, tenant_id, phone_number_id)
    return FileSender(pool, provider, tenant_id, phone_number_id, files) if files else None
