"""Fetching a tenant's file from a URL for an upload: through the URL guard, bounded in size
and time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import httpx

from wa_cloud.errors import Unprocessable
from wa_cloud.urlguard import GuardedClient, MalformedUrl, checked_url

URL_FETCH_SECONDS: Final = 60.0


@dataclass(frozen=True, slots=True)
class Fetched:
    content: bytes
    mime_type: str | None
    filename: str | None


def _fetch_error(message: str) -> Unprocessable:
    return Unprocessable(message, "media_download_failed")


async def fetch_url(http: GuardedClient, url: str, *, max_bytes: int) -> Fetched:
    """GET `url`, refusing (422) an error answer or more than `max_bytes` without reading on.
    The URL is the tenant's: `http` is the guarded client, so a private address is a 422
    `url_not_allowed` before any connection to it, on the first hop or on any redirect."""
    try:
        checked_url(url)  # the guard's own reading of the URL, before anything is fetched
    except MalformedUrl as exc:
        raise _fetch_error(f"'url' must be an absolute http or https URL: {exc.reason}.") from None
    try:
        async with asyncio.timeout(URL_FETCH_SECONDS):
            return await _stream(http, url, max_bytes)
    except TimeoutError:
        raise _fetch_error(f"The URL did not answer within {URL_FETCH_SECONDS:g} s.") from None
    except httpx.HTTPError as exc:
        raise _fetch_error(f"The URL could not be fetched: {type(exc).__name__}.") from exc


async def _stream(http: GuardedClient, url: str, max_bytes: int) -> Fetched:
    too_large = Unprocessable(
        f"The file at the URL is larger than {max_bytes} bytes.", "media_too_large"
    )
    # Redirects are followed (files often sit behind one); each hop is a new request through
    # the guard, its URL and its address checked again.
    async with http.stream("GET", url, follow_redirects=True) as response:
        if not response.is_success:
            raise _fetch_error(f"The URL answered HTTP {response.status_code}.")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise too_large
            chunks.append(chunk)
        name = response.url.path.rsplit("/", 1)[-1] or None
        return Fetched(b"".join(chunks), response.headers.get("content-type"), name)
