"""Media: uploads checked before Meta sees them, voice notes converted to OGG/Opus, inbound media
downloaded and kept, all against the sandbox Meta on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import math
import struct
import subprocess
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import NUMBER_A, Meta, serve_asgi
from wa_cloud.config import Settings
from wa_cloud.db.pool import create_pool
from wa_cloud.errors import Unprocessable
from wa_cloud.graph.errors import GraphUnavailable
from wa_cloud.media.inbound import MediaFetcher
from wa_cloud.media.rules import MB, check_media, sha256_matches
from wa_cloud.media.voice import AudioConversionError, to_voice_note
from wa_cloud.providers.base import MediaFile
from wa_cloud.worker import run_consumer

TOKEN = "EAAG-test-token-" + NUMBER_A
CUSTOMER = "16505551234"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200)
GIF = b"GIF89a" + bytes(100)
OGG_VORBIS = b"OggS\x00\x02" + bytes(22) + b"\x01vorbis" + bytes(100)


def wav_tone(seconds: float = 0.5, rate: int = 22_050, channels: int = 2) -> bytes:
    """A 440 Hz sine as 16-bit PCM WAV, written with the standard library."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        sample = int(12_000 * math.sin(2 * math.pi * 440 * i / rate))
        frames += struct.pack("<h", sample) * channels
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(bytes(frames))
    return out.getvalue()


def ffmpeg_describe(content: bytes, tmp_path: Path) -> str:
    """What the imageio-ffmpeg binary says of a file's streams (its stderr)."""
    import imageio_ffmpeg

    path = tmp_path / "probe.bin"
    path.write_bytes(content)
    done = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stderr


def assert_voice_note(content: bytes, tmp_path: Path) -> None:
    assert content.startswith(b"OggS")
    streams = [line for line in ffmpeg_describe(content, tmp_path).splitlines() if "Audio:" in line]
    assert streams, "ffmpeg found no audio stream"
    assert "Audio: opus" in streams[0] and "mono" in streams[0] and "48000 Hz" in streams[0]


# Helpers against the running app and sandbox --------------------------------------------------
async def upload_file(
    meta: Meta, content: bytes, mime_type: str | None, kind: str, **fields: str
) -> httpx.Response:
    part: tuple[str, bytes] | tuple[str, bytes, str] = (
        ("upload.bin", content) if mime_type is None else ("upload.bin", content, mime_type)
    )
    return await meta.app.client.post(
        "/v1/media",
        files={"file": part},
        data={"from": NUMBER_A, "type": kind, **fields},
        headers=meta.tenant(),
    )


async def sandbox_media(meta: Meta, media_id: str) -> tuple[dict[str, Any], bytes]:
    """What the sandbox Meta holds under `media_id`, fetched the way Meta serves it."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    info = await meta.sandbox.get(f"/v23.0/{media_id}", headers=auth)
    assert info.status_code == 200, info.text
    download = await meta.sandbox.get(info.json()["url"], headers=auth)
    assert download.status_code == 200, download.text
    return info.json(), download.content


async def media_uploads_seen(meta: Meta) -> list[dict[str, Any]]:
    response = await meta.sandbox.get("/_sandbox/requests", params={"path_contains": "/media"})
    return [r for r in response.json()["data"] if r["method"] == "POST"]


async def customer_sends_media(meta: Meta, kind: str, media: dict[str, Any]) -> None:
    response = await meta.sandbox.post(
        "/_sandbox/inbound",
        json={
            "phone_number_id": NUMBER_A,
            "from": CUSTOMER,
            "message": {"type": kind, kind: media},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["webhook_status"] == 200


async def wait_media_row(
    db: asyncpg.Connection, media_id: str, timeout: float = 10.0
) -> asyncpg.Record:
    async with asyncio.timeout(timeout):
        while True:
            row = await db.fetchrow("SELECT * FROM media WHERE media_id = $1", media_id)
            if row is not None and row["state"] != "pending":
                return row
            await asyncio.sleep(0.05)


def b64_sha256(content: bytes) -> str:
    return base64.b64encode(hashlib.sha256(content).digest()).decode()


# A file server on loopback, for uploads from a URL ------------------------------------------
async def _file(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "pic.png":
        return Response(PNG, media_type="image/png")
    if name == "photo":  # no useful type: the bytes say what it is
        return Response(JPEG, media_type="application/octet-stream")
    if name == "huge.jpg":
        # Streamed without a length, so the cap has to hold while reading.
        async def chunks() -> AsyncIterator[bytes]:
            yield JPEG
            for _ in range(6):
                yield bytes(MB)

        return StreamingResponse(chunks(), media_type="image/jpeg")
    if name == "tone.wav":
        return Response(wav_tone(), media_type="audio/wav")
    return Response(b"gone", status_code=404)


@pytest.fixture
async def files() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/{name}", _file)])
    async with serve_asgi(app) as url:
        yield url


# Uploads ------------------------------------------------------------------------------------
async def test_multipart_image_upload_reaches_meta(meta: Meta) -> None:
    response = await upload_file(meta, JPEG, "image/jpeg", "image")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"],
        "mime_type": "image/jpeg",
        "sha256": hashlib.sha256(JPEG).hexdigest(),
        "size": len(JPEG),
    }
    info, content = await sandbox_media(meta, body["id"])
    assert content == JPEG
    assert info["mime_type"] == "image/jpeg" and info["sha256"] == body["sha256"]
    [seen] = await media_uploads_seen(meta)
    assert seen["path"].endswith(f"/{NUMBER_A}/media")
    assert seen["body"]["messaging_product"] == "whatsapp"
    assert seen["body"]["type"] == "image/jpeg"
    assert seen["body"]["file"]["size"] == len(JPEG)

    # A part without a useful type: the bytes say what it is.
    response = await upload_file(meta, PNG, None, "image")
    assert response.status_code == 201, response.text
    assert response.json()["mime_type"] == "image/png"


async def test_upload_from_a_url(meta: Meta, files: str) -> None:
    for name, mime_type, content in (("pic.png", "image/png", PNG), ("photo", "image/jpeg", JPEG)):
        response = await meta.app.client.post(
            "/v1/media",
            json={"from": NUMBER_A, "type": "image", "url": f"{files}/{name}"},
            headers=meta.tenant(),
        )
        assert response.status_code == 201, response.text
        assert response.json()["mime_type"] == mime_type
        _, stored = await sandbox_media(meta, response.json()["id"])
        assert stored == content


async def test_url_refusals_send_nothing(meta: Meta, files: str) -> None:
    cases = [
        (f"{files}/missing.png", "media_download_failed"),
        (f"{files}/huge.jpg", "media_too_large"),  # streamed without a length: capped reading
        ("ftp://example.com/a.jpg", "media_download_failed"),
        ("file:///etc/passwd", "media_download_failed"),
        ("/a.jpg", "media_download_failed"),
    ]
    for url, code in cases:
        response = await meta.app.client.post(
            "/v1/media", json={"from": NUMBER_A, "type": "image", "url": url}, headers=meta.tenant()
        )
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["code"] == code, url
    assert await media_uploads_seen(meta) == []


UNSUPPORTED, TOO_LARGE = "unsupported_media_type", "media_too_large"
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 "
REFUSALS = [
    ("gif-as-image", GIF, "image/gif", "image", UNSUPPORTED),
    ("jpeg-declared-png", JPEG, "image/png", "image", UNSUPPORTED),
    ("text-declared-jpeg", b"hello, not a picture", "image/jpeg", "image", UNSUPPORTED),
    ("png-as-sticker", PNG, "image/png", "sticker", UNSUPPORTED),
    ("vorbis-as-audio", OGG_VORBIS, "audio/ogg", "audio", UNSUPPORTED),
    ("pdf-declared-but-jpeg", JPEG, "application/pdf", "document", UNSUPPORTED),
    ("unknown-kind", JPEG, "image/jpeg", "gif", UNSUPPORTED),
    ("image-over-5mb", JPEG + bytes(5 * MB), "image/jpeg", "image", TOO_LARGE),
    ("sticker-over-500kb", WEBP + bytes(500 * 1024), None, "sticker", TOO_LARGE),
    ("wav-without-voice", wav_tone(0.1), "audio/wav", "audio", UNSUPPORTED),
]


async def test_refused_before_meta(meta: Meta) -> None:
    for name, content, mime_type, kind, code in REFUSALS:
        response = await upload_file(meta, content, mime_type, kind)
        assert response.status_code == 422, (name, response.text)
        error = response.json()["error"]
        assert error["code"] == code, name
        assert error["message"], name
    assert await media_uploads_seen(meta) == []


async def test_number_must_be_the_callers(meta: Meta, db: asyncpg.Connection) -> None:
    response = await meta.app.client.post(
        "/v1/media",
        files={"file": ("a.jpg", JPEG, "image/jpeg")},
        data={"from": "999999999999", "type": "image"},
        headers=meta.tenant(),
    )
    assert response.status_code == 404
    other = await meta.app.create_tenant("Other Co")
    response = await meta.app.client.post(
        "/v1/media",
        files={"file": ("a.jpg", JPEG, "image/jpeg")},
        data={"from": NUMBER_A, "type": "image"},
        headers={"authorization": f"Bearer {other['api_key']}"},
    )
    assert response.status_code == 404
    paused = await meta.app.client.patch(
        f"/v1/admin/tenants/{meta.tenant_id}", json={"active": False}, headers=meta.app.admin()
    )
    assert paused.status_code == 200, paused.text
    response = await upload_file(meta, JPEG, "image/jpeg", "image")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_inactive"
    assert await media_uploads_seen(meta) == []


async def test_malformed_requests(meta: Meta) -> None:
    client, headers = meta.app.client, meta.tenant()
    no_file = await client.post(
        "/v1/media", files={"other": ("a", b"x")}, data={"from": NUMBER_A}, headers=headers
    )
    assert no_file.status_code == 422
    assert (await client.post("/v1/media", json={"type": "image"}, headers=headers)).json()[
        "error"
    ]["code"] == "missing_field"
    maybe = await upload_file(meta, JPEG, "image/jpeg", "image", voice="maybe")
    assert maybe.status_code == 422
    assert maybe.json()["error"]["code"] == "invalid_field"
    voice_image = await upload_file(meta, JPEG, "image/jpeg", "image", voice="true")
    assert voice_image.status_code == 422
    assert (await client.post("/v1/media", json={"from": NUMBER_A})).status_code == 401


# Voice notes --------------------------------------------------------------------------------
def test_to_voice_note_makes_mono_48k_opus_in_ogg(tmp_path: Path) -> None:
    note = to_voice_note(wav_tone(channels=2, rate=22_050))
    assert_voice_note(note, tmp_path)
    assert check_media("audio", "audio/ogg", len(note), note) == "audio/ogg"


def test_to_voice_note_refuses_what_is_not_audio() -> None:
    with pytest.raises(AudioConversionError):
        to_voice_note(b"this is not audio" * 10)


async def test_voice_uploads_are_converted_before_meta(
    meta: Meta, files: str, tmp_path: Path
) -> None:
    response = await upload_file(meta, wav_tone(), "audio/wav", "audio", voice="true")
    assert response.status_code == 201, response.text
    assert response.json()["mime_type"] == "audio/ogg"
    info, sent = await sandbox_media(meta, response.json()["id"])
    assert info["mime_type"] == "audio/ogg"
    assert hashlib.sha256(sent).hexdigest() == response.json()["sha256"]
    assert_voice_note(sent, tmp_path)

    response = await meta.app.client.post(
        "/v1/media",
        json={"from": NUMBER_A, "type": "audio", "url": f"{files}/tone.wav", "voice": True},
        headers=meta.tenant(),
    )
    assert response.status_code == 201, response.text
    _, sent = await sandbox_media(meta, response.json()["id"])
    assert_voice_note(sent, tmp_path)

    garbage = await upload_file(meta, b"not audio" * 50, "audio/wav", "audio", voice="true")
    assert garbage.status_code == 422
    assert garbage.json()["error"]["code"] == "unsupported_media_type"
    assert "voice note" in garbage.json()["error"]["message"]


# Inbound media ------------------------------------------------------------------------------
async def test_inbound_media_is_downloaded_and_kept(meta: Meta, db: asyncpg.Connection) -> None:
    uploaded = await upload_file(meta, JPEG, "image/jpeg", "image")
    media_id = uploaded.json()["id"]
    await customer_sends_media(
        meta,
        "image",
        {"id": media_id, "mime_type": "image/jpeg", "sha256": b64_sha256(JPEG), "caption": "hi"},
    )
    row = await wait_media_row(db, media_id)
    assert row["state"] == "stored", row["last_error"]
    assert bytes(row["content"]) == JPEG
    assert row["size"] == len(JPEG) and row["mime_type"] == "image/jpeg"
    assert str(row["tenant_id"]) == meta.tenant_id
    assert row["message_id"] is not None

    fetched = await meta.app.client.get(f"/v1/media/{media_id}", headers=meta.tenant())
    assert fetched.status_code == 200
    assert fetched.content == JPEG
    assert fetched.headers["content-type"] == "image/jpeg"
    assert fetched.headers["x-content-type-options"] == "nosniff"

    other = await meta.app.create_tenant("Nosy Co")
    nosy = {"authorization": f"Bearer {other['api_key']}"}
    assert (await meta.app.client.get(f"/v1/media/{media_id}", headers=nosy)).status_code == 404
    assert (await meta.app.client.get("/v1/media/123", headers=meta.tenant())).status_code == 404


async def test_redelivered_inbound_media_is_queued_once(meta: Meta, db: asyncpg.Connection) -> None:
    uploaded = await upload_file(meta, PNG, "image/png", "image")
    media_id = uploaded.json()["id"]
    media = {"id": media_id, "mime_type": "image/png", "sha256": hashlib.sha256(PNG).hexdigest()}
    await customer_sends_media(meta, "image", media)
    await customer_sends_media(meta, "image", media)
    row = await wait_media_row(db, media_id)
    assert row["state"] == "stored", row["last_error"]  # a hex sha256 is understood too
    assert await db.fetchval("SELECT count(*) FROM media WHERE media_id = $1", media_id) == 1


async def test_inbound_media_with_wrong_sha256_fails_with_the_reason(
    meta: Meta, db: asyncpg.Connection
) -> None:
    uploaded = await upload_file(meta, JPEG, "image/jpeg", "image")
    media_id = uploaded.json()["id"]
    await customer_sends_media(
        meta, "image", {"id": media_id, "mime_type": "image/jpeg", "sha256": b64_sha256(b"other")}
    )
    row = await wait_media_row(db, media_id)
    assert row["state"] == "failed"
    assert "sha256 mismatch" in row["last_error"]
    assert row["content"] is None
    response = await meta.app.client.get(f"/v1/media/{media_id}", headers=meta.tenant())
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "media_failed"
    assert "sha256 mismatch" in response.json()["error"]["message"]


async def test_inbound_media_unknown_to_meta_fails(meta: Meta, db: asyncpg.Connection) -> None:
    await customer_sends_media(meta, "document", {"id": "4242424242", "filename": "x.pdf"})
    row = await wait_media_row(db, "4242424242")
    assert row["state"] == "failed"
    assert row["attempts"] == 1  # Meta's "no such object" is permanent: not retried


# The fetcher's retry policy, with a fake provider ---------------------------------------------
class FlakyProvider:
    def __init__(self, failures: int, content: bytes) -> None:
        self.failures = failures
        self.content = content
        self.calls = 0

    async def download_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        self.calls += 1
        if self.calls <= self.failures:
            raise GraphUnavailable("cannot reach the Graph API: ConnectError")
        return MediaFile(self.content, "image/png", hashlib.sha256(self.content).hexdigest())


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert settings.database_url
    pool = await create_pool(settings.database_url, max_size=2)
    yield pool
    await pool.close()


async def _pending_media(db: asyncpg.Connection, sha256: str | None) -> int:
    tenant = await db.fetchval("INSERT INTO tenants (name) VALUES ('Fetch Co') RETURNING id")
    await db.execute(
        "INSERT INTO numbers (phone_number_id, tenant_id, waba_id, access_token_enc) "
        "VALUES ('555000111', $1, 'w1', '\\x00'::bytea)",
        tenant,
    )
    return int(
        await db.fetchval(
            "INSERT INTO media (tenant_id, phone_number_id, media_id, sha256) "
            "VALUES ($1, '555000111', 'm1', $2) RETURNING id",
            tenant,
            sha256,
        )
    )


async def _run_due(db: asyncpg.Connection, fetcher: MediaFetcher, row_id: int) -> asyncpg.Record:
    await db.execute("UPDATE media SET run_after = now() WHERE id = $1", row_id)
    assert await fetcher.run_once() == 1
    return await db.fetchrow("SELECT * FROM media WHERE id = $1", row_id)


@pytest.fixture
def flaky() -> Iterator[FlakyProvider]:
    yield FlakyProvider(failures=10, content=PNG)


async def test_transient_errors_retry_with_backoff_then_fail(
    pool: asyncpg.Pool, db: asyncpg.Connection, flaky: FlakyProvider
) -> None:
    row_id = await _pending_media(db, b64_sha256(PNG))
    fetcher = MediaFetcher(pool, lambda row: flaky, max_attempts=3)  # type: ignore[arg-type,return-value]
    assert await fetcher.run_once() == 1
    row = await db.fetchrow("SELECT *, run_after > now() AS later FROM media WHERE id = $1", row_id)
    assert (row["state"], row["attempts"], row["later"]) == ("pending", 1, True)
    assert "GraphUnavailable" in row["last_error"]
    assert await fetcher.run_once() == 0  # not due yet: it backs off
    await _run_due(db, fetcher, row_id)
    row = await _run_due(db, fetcher, row_id)
    assert (row["state"], row["attempts"]) == ("failed", 3)
    assert row["last_error"].startswith("gave up after 3 attempts: GraphUnavailable")


async def test_a_transient_error_then_success_stores(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    row_id = await _pending_media(db, b64_sha256(PNG))
    provider = FlakyProvider(failures=1, content=PNG)
    fetcher = MediaFetcher(pool, lambda row: provider, max_attempts=3)  # type: ignore[arg-type,return-value]
    assert await fetcher.run_once() == 1
    row = await _run_due(db, fetcher, row_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("stored", 2, None)
    assert bytes(row["content"]) == PNG and row["sha256"] == hashlib.sha256(PNG).hexdigest()


async def test_a_row_whose_lease_keeps_expiring_fails(
    pool: asyncpg.Pool, db: asyncpg.Connection, flaky: FlakyProvider
) -> None:
    row_id = await _pending_media(db, None)
    await db.execute("UPDATE media SET attempts = 3 WHERE id = $1", row_id)
    fetcher = MediaFetcher(pool, lambda row: flaky, max_attempts=3)  # type: ignore[arg-type,return-value]
    row = await _run_due(db, fetcher, row_id)
    assert row["state"] == "failed" and "lease expired" in row["last_error"]
    assert flaky.calls == 0


# Rules as data ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "mime_type", "content", "expected"),
    [
        ("image", "image/jpg", JPEG, "image/jpeg"),
        ("image", "IMAGE/PNG; q=1", PNG, "image/png"),
        ("video", "video/mp4", b"\x00\x00\x00\x18ftypisom" + bytes(32), "video/mp4"),
        ("video", "video/3gpp", b"\x00\x00\x00\x18ftyp3gp5" + bytes(32), "video/3gpp"),
        ("audio", "audio/mp4", b"\x00\x00\x00\x18ftypM4A " + bytes(32), "audio/mp4"),
        ("audio", "audio/mpeg", b"ID3\x04" + bytes(32), "audio/mpeg"),
        ("audio", "audio/amr", b"#!AMR\n" + bytes(32), "audio/amr"),
        ("document", "application/pdf", b"%PDF-1.7\n" + bytes(32), "application/pdf"),
        ("document", None, b"%PDF-1.7\n" + bytes(32), "application/pdf"),
        ("document", "text/plain", b"plain words", "text/plain"),
        ("document", "application/octet-stream", OGG_VORBIS, "audio/ogg"),  # any codec in a file
        ("sticker", "image/webp", WEBP + bytes(32), "image/webp"),
    ],
)
def test_check_media_accepts(
    kind: str, mime_type: str | None, content: bytes, expected: str
) -> None:
    assert check_media(kind, mime_type, len(content), content) == expected


def test_check_media_limits_are_metas() -> None:
    for kind, limit in (("image", 5 * MB), ("audio", 16 * MB), ("video", 16 * MB)):
        head = {"image": JPEG, "audio": b"ID3", "video": b"\x00\x00\x00\x18ftypisom"}[kind]
        mime = {"image": "image/jpeg", "audio": "audio/mpeg", "video": "video/mp4"}[kind]
        assert check_media(kind, mime, limit, head) == mime
        with pytest.raises(Unprocessable) as exc:
            check_media(kind, mime, limit + 1, head)
        assert exc.value.code == "media_too_large"
    check_media("document", "application/pdf", 100 * MB, b"%PDF-")
    with pytest.raises(Unprocessable):
        check_media("document", "application/pdf", 100 * MB + 1, b"%PDF-")
    with pytest.raises(Unprocessable):
        check_media("image", "image/jpeg", 0, b"")
    with pytest.raises(Unprocessable, match="Opus"):
        check_media("audio", "audio/ogg", len(OGG_VORBIS), OGG_VORBIS)


def test_sha256_in_hex_or_base64() -> None:
    digest = hashlib.sha256(b"media").digest()
    assert sha256_matches(digest.hex(), digest) is True
    assert sha256_matches(digest.hex().upper(), digest) is True
    assert sha256_matches(base64.b64encode(digest).decode(), digest) is True
    assert sha256_matches(base64.urlsafe_b64encode(digest).decode().rstrip("="), digest) is True
    assert sha256_matches(b64_sha256(b"other"), digest) is False
    assert sha256_matches("not a digest", digest) is None


class SlowForOneTenant:
    """Downloads of the `slow...` media hang (a huge file, a slow CDN); others are instant."""

    def __call__(self, row: asyncpg.Record) -> SlowForOneTenant:
        return self

    async def download_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        if media_id.startswith("slow"):
            await asyncio.sleep(60)
        return MediaFile(PNG, "image/png", hashlib.sha256(PNG).hexdigest())


async def test_one_tenants_slow_downloads_do_not_hold_another_tenants(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    tenants = {}
    for name, number in (("Slow Co", "555000111"), ("Quick Co", "555000222")):
        tenants[name] = await db.fetchval(
            "INSERT INTO tenants (name) VALUES ($1) RETURNING id", name
        )
        await db.execute(
            "INSERT INTO numbers (phone_number_id, tenant_id, waba_id, access_token_enc) "
            "VALUES ($1, $2, 'w1', '\\x00'::bytea)",
            number,
            tenants[name],
        )
    for i in range(20):  # the slow tenant's backlog comes first
        await db.execute(
            "INSERT INTO media (tenant_id, phone_number_id, media_id, run_after)"
            " VALUES ($1, '555000111', $2, now() - interval '1 minute')",
            tenants["Slow Co"],
            f"slow{i}",
        )
    quick = await db.fetchval(
        "INSERT INTO media (tenant_id, phone_number_id, media_id) "
        "VALUES ($1, '555000222', 'quick') RETURNING id",
        tenants["Quick Co"],
    )
    fetcher = MediaFetcher(pool, SlowForOneTenant(), max_attempts=3)  # type: ignore[arg-type]
    stopping = asyncio.Event()
    running = asyncio.create_task(run_consumer(fetcher, stopping))
    try:
        async with asyncio.timeout(10):
            while await db.fetchval("SELECT state FROM media WHERE id = $1", quick) != "stored":
                await asyncio.sleep(0.05)
        taken = await db.fetchval(
            "SELECT count(*) FROM media WHERE phone_number_id = '555000111' AND attempts > 0"
        )
        assert taken == 2  # its share of this worker's downloads, no more
    finally:
        stopping.set()
        fetcher.wake.set()
        await running
