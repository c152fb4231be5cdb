"""Multipart forms parsed as they stream in: the parser's limits on its own, and `POST /v1/media`
refusing a form while the client is still sending it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import NUMBER_A, Meta
from wa_cloud import formdata
from wa_cloud.api.media import MAX_UPLOAD_BODY, MAX_UPLOAD_FILE
from wa_cloud.errors import PayloadTooLarge
from wa_cloud.media.rules import MB

BOUNDARY = "wa-cloud-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) * 4
LIMITS = formdata.FormLimits(
    max_body_bytes=MB, max_file_bytes=64 * 1024, max_parts=4, max_field_bytes=100
)


def field(name: str, value: bytes | str, *, headers: str = "") -> bytes:
    data = value.encode() if isinstance(value, str) else value
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n{headers}\r\n'
    return head.encode() + data + b"\r\n"


def file_head(name: str = "file", filename: str = "a.jpg", mime: str = "image/jpeg") -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: {mime}\r\n\r\n"
    ).encode()


END = f"--{BOUNDARY}--\r\n".encode()


def upload_form(content: bytes = JPEG) -> bytes:
    return field("from", NUMBER_A) + field("type", "image") + file_head() + content + b"\r\n" + END


# The parser alone ----------------------------------------------------------------------------
def test_parts_by_name_whatever_the_chunking() -> None:
    body = field("from", NUMBER_A) + file_head(filename="été.jpg") + JPEG + b"\r\n" + END
    whole = formdata.parse(body, CONTENT_TYPE, LIMITS)
    assert whole["from"] == formdata.Part("from", NUMBER_A.encode(), None, None)
    assert whole["file"] == formdata.Part("file", JPEG, "été.jpg", "image/jpeg")
    # A boundary split across reads must not end a part early or leak into its data.
    for size in (1, 7, len(BOUNDARY) + 3):
        reader = formdata.FormReader(CONTENT_TYPE, LIMITS)
        for start in range(0, len(body), size):
            reader.feed(body[start : start + size])
        assert reader.finish() == whole, size


def test_a_part_past_the_count_is_refused_at_its_boundary() -> None:
    reader = formdata.FormReader(CONTENT_TYPE, LIMITS)
    reader.feed(b"".join(field(f"f{i}", "x") for i in range(4)))
    # Only the next boundary line: the fifth part is refused before its headers arrive.
    with pytest.raises(formdata.TooManyParts) as refused:
        reader.feed(f"--{BOUNDARY}\r\n".encode())
    assert (refused.value.status, refused.value.code) == (413, "too_many_parts")


def test_oversize_parts_are_refused_when_the_excess_arrives() -> None:
    reader = formdata.FormReader(CONTENT_TYPE, LIMITS)
    reader.feed(field("type", "x" * 100)[:-2])  # exactly the limit is fine
    reader = formdata.FormReader(CONTENT_TYPE, LIMITS)
    with pytest.raises(formdata.FieldTooLarge) as field_refused:
        reader.feed(field("type", "x" * 101)[:-2])
    assert (field_refused.value.status, field_refused.value.code) == (413, "field_too_large")

    reader = formdata.FormReader(CONTENT_TYPE, LIMITS)
    reader.feed(file_head() + bytes(64 * 1024))
    with pytest.raises(formdata.FileTooLarge) as file_refused:
        reader.feed(b"\x00")
    assert (file_refused.value.status, file_refused.value.code) == (413, "payload_too_large")

    with pytest.raises(PayloadTooLarge):
        formdata.parse(bytes(MB + 1), CONTENT_TYPE, LIMITS)


MALFORMED = [
    ("no closing boundary", field("from", NUMBER_A)),
    ("not a form", b"hello, world"),
    ("no name", f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n".encode() + END),
    ("not form-data", f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n".encode() + END),
    ("same field twice", field("type", "image") + field("type", "video") + END),
    ("base64 part", field("from", "MTIz", headers="Content-Transfer-Encoding: base64\r\n") + END),
    ("huge part header", field("from", "1", headers=f"X-Pad: {'a' * 4096}\r\n") + END),
]


@pytest.mark.parametrize(("case", "body"), MALFORMED, ids=[case for case, _ in MALFORMED])
def test_malformed_forms_are_invalid(case: str, body: bytes) -> None:
    with pytest.raises(formdata.InvalidForm) as refused:
        formdata.parse(body, CONTENT_TYPE, LIMITS)
    assert (refused.value.status, refused.value.code) == (400, "invalid_form"), case


def test_a_content_type_without_boundary_is_invalid() -> None:
    for content_type in ("multipart/form-data", "multipart/form-data; boundary="):
        with pytest.raises(formdata.InvalidForm):
            formdata.FormReader(content_type, LIMITS)


def test_unknown_names_are_refused_before_their_data() -> None:
    limits = formdata.FormLimits(
        max_body_bytes=MB, max_file_bytes=MB, allowed_names=frozenset({"file"})
    )
    reader = formdata.FormReader(CONTENT_TYPE, limits)
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="other"\r\n\r\n'.encode()
    with pytest.raises(formdata.UnknownField) as refused:
        reader.feed(head)
    assert (refused.value.status, refused.value.code) == (422, "unknown_field")


def test_sixteen_megabytes_cost_little_cpu() -> None:
    # Short lines were the standard-library parser's worst case: 2.6 CPU-seconds for 16 MB.
    content = b"a\r\n" * (16 * MB // 3)
    body = file_head(mime="text/plain") + content + b"\r\n" + END
    limits = formdata.FormLimits(max_body_bytes=17 * MB, max_file_bytes=16 * MB)
    reader = formdata.FormReader(CONTENT_TYPE, limits)
    started = time.process_time()
    for start in range(0, len(body), 64 * 1024):
        reader.feed(body[start : start + 64 * 1024])
    parts = reader.finish()
    spent = time.process_time() - started
    assert len(parts["file"].data) == len(content)
    assert spent < 0.5, f"{spent:.2f} CPU-seconds for 16 MB"


# Through POST /v1/media ----------------------------------------------------------------------
async def post_partly(
    meta: Meta, declared: int, chunks: Iterable[bytes | memoryview]
) -> tuple[int, dict[str, Any]]:
    """POST /v1/media declaring `declared` bytes but sending only `chunks`, then wait for the
    answer: a server that read the whole body first would never give one."""
    address = urlsplit(meta.app.base_url)
    assert address.hostname and address.port
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(
            (
                f"POST /v1/media HTTP/1.1\r\nhost: {address.netloc}\r\n"
                f"authorization: Bearer {meta.api_key}\r\n"
                f"content-type: {CONTENT_TYPE}\r\ncontent-length: {declared}\r\n\r\n"
            ).encode()
        )
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = json.loads(await reader.readexactly(length))
        return status, body
    finally:
        writer.close()


async def test_too_many_parts_answered_before_the_rest_is_sent(meta: Meta) -> None:
    allowed = field("from", NUMBER_A) + field("type", "image") + field("voice", "false")
    allowed += file_head() + JPEG + b"\r\n"
    flood = b"".join(field(f"f{i}", "x") for i in range(10_000))
    declared = len(allowed) + len(flood) + len(END)
    # Of ten thousand more parts, the boundary line of the first is sent: enough to refuse.
    status, answer = await post_partly(meta, declared, [allowed, f"--{BOUNDARY}\r\n".encode()])
    assert status == 413, answer
    assert answer["error"]["code"] == "too_many_parts"


async def test_oversize_file_answered_before_the_rest_is_sent(meta: Meta) -> None:
    head = field("from", NUMBER_A) + field("type", "document") + file_head(mime="application/pdf")
    assert len(head) + MAX_UPLOAD_FILE + 1 < MAX_UPLOAD_BODY  # the declared length is allowed
    block = memoryview(bytes(MB))
    whole, rest = divmod(MAX_UPLOAD_FILE + 1, MB)
    sent = [head, *([block] * whole), block[:rest]]
    status, answer = await post_partly(meta, MAX_UPLOAD_BODY, sent)
    assert status == 413, answer
    assert answer["error"]["code"] == "payload_too_large"
    assert "file" in answer["error"]["message"].lower()


async def test_form_refusals(meta: Meta) -> None:
    async def post(body: bytes) -> httpx.Response:
        return await meta.app.client.post(
            "/v1/media",
            content=body,
            headers={**meta.tenant(), "content-type": CONTENT_TYPE},
        )

    cases = [
        (upload_form()[: -len(END)], 400, "invalid_form"),  # truncated: no closing boundary
        (field("type", "x" * 2000) + END, 413, "field_too_large"),
        (
            field("from", NUMBER_A) + field("voice", "no") + field("note", "hi") + END,
            422,
            "unknown_field",
        ),
        (b"".join(field("from", NUMBER_A) for _ in range(3)) + END, 400, "invalid_form"),
    ]
    for body, status, code in cases:
        response = await post(body)
        assert response.status_code == status, (code, response.text)
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["message"]
    # The same form, whole, still goes through.
    response = await post(upload_form())
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(JPEG)
