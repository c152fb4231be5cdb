"""The console's sign-in, session cookie, CSRF and live stream (console/session.py, views.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import NUMBER_A, Running, corpus, serve
from tests.console_client import ConsoleUser, nonce_of, sign_in
from wa_cloud.config import Settings
from wa_cloud.console.session import COOKIE
from wa_cloud.db.pool import create_pool
from wa_cloud.retention import run_retention
from wa_cloud.tenants.links import CONSOLE_SALT, make_token

pytestmark = pytest.mark.asyncio


async def test_sign_in_with_a_key_and_out_again(app: Running, tenant: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as browser:
        first = await browser.get("/console/")
        assert first.status_code == 303
        assert first.headers["location"].startswith("/console/signin?next=")
        signed = await sign_in(browser, tenant["api_key"])
        assert signed.status_code == 303, signed.text
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert tenant["api_key"] not in cookie
        home = await browser.get("/console/")
        assert home.headers["location"] == "/console/inbox"


async def test_a_wrong_token_is_refused(app: Running) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as browser:
        refused = await sign_in(browser, "not-a-key")
        assert refused.status_code == 401
        assert "not a valid admin token or API key" in refused.text
        assert "wa_console=" not in refused.headers.get("set-cookie", "")


async def test_sign_in_from_another_site_is_refused(app: Running, tenant: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as browser:
        form = await browser.get("/console/signin")
        refused = await browser.post(
            "/console/signin",
            data={"nonce": nonce_of(form.text), "token": tenant["api_key"]},
            headers={"origin": "https://evil.example"},
        )
        assert refused.status_code == 403
        without_nonce = await browser.post("/console/signin", data={"token": tenant["api_key"]})
        assert without_nonce.status_code == 403


async def test_the_invitation_link_signs_in_and_a_newer_one_ends_it(
    app: Running, tenant: dict[str, Any]
) -> None:
    from uuid import UUID

    status_token = make_token(app.settings, UUID(tenant["id"]))
    token = make_token(app.settings, UUID(tenant["id"]), salt=CONSOLE_SALT)
    async with httpx.AsyncClient(base_url=app.base_url) as browser:
        # The status page's link (read-only, maybe shared with the team) never opens a session.
        page = await browser.get(f"/console/link/{status_token}")
        refused = await browser.post(
            f"/console/link/{status_token}",
            data={"nonce": nonce_of(page.text)},
            headers={"origin": app.base_url},
        )
        assert refused.status_code == 404, refused.text
        assert "wa_console=" not in refused.headers.get("set-cookie", "")
        page = await browser.get(f"/console/link/{token}")
        assert page.status_code == 200
        signed = await browser.post(
            f"/console/link/{token}",
            data={"nonce": nonce_of(page.text)},
            headers={"origin": app.base_url},
        )
        assert signed.status_code == 303, signed.text
        assert (await browser.get("/console/")).headers["location"] == "/console/inbox"
        invited = await app.client.post(
            f"/v1/admin/tenants/{tenant['id']}/invite",
            json={"email": "owner@example.com"},
            headers={"authorization": f"Bearer {app.settings.admin_token}"},
        )
        # No mail server here (503), but the invitation's new link replaces the old one anyway.
        assert invited.status_code in (202, 503), invited.text
        ended = await browser.get("/console/")
        assert ended.status_code == 303
        assert ended.headers["location"].startswith("/console/signin")


async def test_sign_out_needs_the_csrf_token(app: Running) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as browser:
        await sign_in(browser, app.settings.admin_token or "")
        assert (await browser.get("/console/")).headers["location"] == "/console/tenants"
        forged = await browser.post("/console/signout", data={"csrf": "guess"})
        assert forged.status_code == 403
        assert (await browser.get("/console/")).status_code == 303  # still signed in
        signin = await browser.get("/console/signin")
        assert signin.status_code == 200


async def test_the_live_stream_reports_a_message_of_the_tenant_only(
    app: Running, tenant: dict[str, Any]
) -> None:
    other = await app.create_tenant("Other Co")
    async with (
        httpx.AsyncClient(base_url=app.base_url) as mine,
        httpx.AsyncClient(base_url=app.base_url) as theirs,
    ):
        await sign_in(mine, tenant["api_key"])
        await sign_in(theirs, other["api_key"])
        seen: dict[str, list[str]] = {"mine": [], "theirs": []}

        async def read(client: httpx.AsyncClient, who: str) -> None:
            async with client.stream("GET", "/console/live") as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                async for line in stream.aiter_lines():
                    seen[who].append(line)

        tasks = [
            asyncio.create_task(read(mine, "mine")),
            asyncio.create_task(read(theirs, "theirs")),
        ]
        await asyncio.sleep(0.5)
        posted = await app.post_webhook(corpus("messages/text.json"))
        assert posted.status_code == 200, posted.text
        async with asyncio.timeout(10):
            while f"data: {NUMBER_A}" not in seen["mine"]:
                await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert "event: message" in seen["mine"]
        assert not any(NUMBER_A in line for line in seen["theirs"])


async def test_behind_a_tls_proxy_the_public_origin_is_the_browsers(settings: Settings) -> None:
    """A PaaS terminates TLS: we see http, the browser sends WA_PUBLIC_URL's https origin."""
    local = replace(settings, public_url="https://console.example.test")
    async with (
        serve(local, run_worker=False) as app,
        httpx.AsyncClient(base_url=app.base_url) as browser,
    ):
        form = await browser.get("/console/signin")
        # The cookies are Secure (the public address is https), which httpx keeps off plain
        # http: sent by hand here, as the browser on https would.
        nonce_cookie = f"wa_console_signin={form.cookies['wa_console_signin']}"
        signed = await browser.post(
            "/console/signin",
            data={"nonce": nonce_of(form.text), "token": local.admin_token or ""},
            headers={"origin": "https://console.example.test", "cookie": nonce_cookie},
        )
        assert signed.status_code == 303, signed.text
        assert "Secure" in signed.headers["set-cookie"]
        form = await browser.get("/console/signin")
        nonce_cookie = f"wa_console_signin={form.cookies['wa_console_signin']}"
        elsewhere = await browser.post(
            "/console/signin",
            data={"nonce": nonce_of(form.text), "token": local.admin_token or ""},
            headers={"origin": "https://other.example.test", "cookie": nonce_cookie},
        )
        assert elsewhere.status_code == 403


@pytest.mark.parametrize("who", ["operator", "business"])
async def test_a_copied_cookie_is_refused_once_its_session_signs_out(
    app: Running, tenant: dict[str, Any], who: str
) -> None:
    """Signing out ends the session, not only this browser's copy of the cookie: another
    browser holding a copy (taken from this one) is signed out too."""
    token = app.settings.admin_token or "" if who == "operator" else tenant["api_key"]
    home = "/console/tenants" if who == "operator" else "/console/inbox"
    async with (
        ConsoleUser(app.base_url) as user,
        httpx.AsyncClient(base_url=app.base_url) as other,
    ):
        await user.sign_in(token)
        other.cookies.set(COOKIE, user.client.cookies[COOKIE], path="/console")
        assert (await other.get(home)).status_code == 200
        signed_out = await user.post("/console/signout")
        assert signed_out.status_code == 303, signed_out.text
        copied = await other.get(home)
        assert copied.status_code == 303
        assert copied.headers["location"].startswith("/console/signin")
        await user.sign_in(token)  # a new session is a new one: it works
        assert (await user.get(home)).status_code == 200


async def test_signed_out_sessions_are_forgotten_once_their_cookies_expire(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    async with ConsoleUser(app.base_url) as user:
        await user.sign_in(tenant["api_key"])
        assert (await user.post("/console/signout")).status_code == 303
    assert await db.fetchval("SELECT count(*) FROM console_signouts") == 1
    await db.execute("UPDATE console_signouts SET expires_at = now() - interval '1 second'")
    pool = await create_pool(app.settings.database_url or "", max_size=2)
    try:
        report = await run_retention(pool, app.settings)
    finally:
        await pool.close()
    assert report.console_signouts == 1
    assert await db.fetchval("SELECT count(*) FROM console_signouts") == 0


async def test_signing_out_a_deleted_tenants_session_still_clears_the_cookie(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    """The tenant was deleted while its page was open: the sign-out form still signs this
    browser out (no sessions of a deleted tenant are left to end, nothing is recorded)."""
    async with ConsoleUser(app.base_url) as user:
        await user.sign_in(tenant["api_key"])
        path = f"/v1/admin/tenants/{tenant['id']}"
        off = await app.client.patch(path, json={"active": False}, headers=app.admin())
        assert off.status_code == 200, off.text
        deleted = await app.client.delete(path, headers=app.admin())
        assert deleted.status_code == 200, deleted.text
        signed_out = await user.post("/console/signout")
        assert signed_out.status_code == 303, signed_out.text
        assert signed_out.headers["location"] == "/console/signin"
        assert 'wa_console=""' in signed_out.headers["set-cookie"]
    assert await db.fetchval("SELECT count(*) FROM console_signouts") == 0
