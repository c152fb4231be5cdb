"""A console user in tests: an httpx client that signs in through the forms, as a browser does,
and posts forms with the page's CSRF token and the browser's Origin header."""

from __future__ import annotations

import re
from typing import Any

import httpx


def nonce_of(page: str) -> str:
    found = re.search(r'name="nonce" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/console/signin")
    assert form.status_code == 200
    return await client.post(
        "/console/signin",
        data={"nonce": nonce_of(form.text), "token": token, "next": "/console/"},
        headers={"origin": str(client.base_url).rstrip("/")},
    )


class ConsoleUser:
    """Signed in with `token` (the admin token or an API key) on the app at `base_url`."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=15)
        self.csrf = ""

    async def __aenter__(self) -> ConsoleUser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def sign_in(self, token: str) -> ConsoleUser:
        signed = await sign_in(self.client, token)
        assert signed.status_code == 303, signed.text
        home = await self.client.get("/console/", follow_redirects=True)
        assert home.status_code == 200, home.text
        self.csrf = csrf_of(home.text)
        return self

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A form post from the console's own pages (its CSRF token and Origin)."""
        headers = {"origin": str(self.client.base_url).rstrip("/"), **kwargs.pop("headers", {})}
        return await self.client.post(
            path, data={"csrf": self.csrf, **(data or {})}, headers=headers, **kwargs
        )
