"""The console attacked as an outsider, another tenant, a stolen or stale cookie, a hostile
customer and a greedy business would: real requests against the app on loopback.

Sessions (forged, tampered, expired, foreign and stale cookies), CSRF on every form and on
signing in, open redirects, markup in everything a page shows, other tenants' ids in paths,
queries, media and the live stream, oversized bodies and searches, the live stream's limits,
and the headers and cookies every response carries.
"""

from __future__ import annotations

import asyncio
import base64
import json
import posixpath
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import asyncpg
import httpx
import pytest

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Running, serve, wait_idle
from tests.console_client import ConsoleUser, csrf_of, nonce_of
from wa_cloud.config import Settings
from wa_cloud.console import live, views
from wa_cloud.console import session as sessions
from wa_cloud.console.numbers import SessionView
from wa_cloud.console.routes import ROUTES
from wa_cloud.tenants.keys import hash_key
from wa_cloud.tenants.links import CONSOLE_SALT, make_token, signed_serializer

pytestmark = pytest.mark.asyncio

CUSTOMER = "16505551234"
PAYLOAD = "\"'><img src=x onerror=alert(1)><script>alert(1)</script>"
SHORT = "<script>alert(1)</script>"  # for the fields with a short limit (tags)
JS_URL = "javascript:alert(1)"
FRAGMENT = {"x-console-fragment": "1"}
TEMPLATES = Path(views.__file__).parent / "templates"
STATIC = Path(views.__file__).parent / "static"
OTHER_NUMBER = "106540352249999"
OTHER_WABA = "102290129349999"


# What every page must be ------------------------------------------------------------------
class _Audit(HTMLParser):
    """Everything in a page that could run script or load from elsewhere."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        given = dict(attrs)
        if tag == "script":
            self._in_script = True
            if given.get("src") != "/console/static/console.js":
                self.problems.append(f"script {given}")
        if tag == "style":
            self.problems.append("style element")
        for name, value in attrs:
            value = (value or "").strip()
            if name.startswith("on") or name in ("style", "srcdoc"):
                self.problems.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action", "formaction", "poster", "data-src", "xlink:href"):
                lowered = re.sub(r"[\s\x00-\x1f]", "", value).lower()
                if lowered.startswith(("javascript:", "vbscript:")):
                    self.problems.append(f"<{tag} {name}={value!r}>")
                elif lowered.startswith("data:") and not (
                    (tag == "link" and value == "data:,")
                    or (
                        tag == "img"
                        and re.fullmatch(r"data:image/(png|jpeg);base64,[\w+/=]+", value)
                    )
                ):
                    self.problems.append(f"<{tag} {name}={value[:40]!r}>")
                elif re.match(r"^(https?:)?//", lowered):
                    self.problems.append(f"third-party <{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script")


def console_token(*args: Any, **kwargs: Any) -> str:
    """An invitation's console link token (its own salt, not the status page's)."""
    return make_token(*args, salt=CONSOLE_SALT, **kwargs)


def assert_safe(response: httpx.Response) -> None:
    """A console page: its headers, and no markup of anyone's data in it."""
    kind = response.headers.get("content-type", "")
    if kind.startswith("text/html"):
        assert (
            response.headers.get("content-security-policy")
            == views.HEADERS["content-security-policy"]
        ), (response.url, response.status_code)
        assert response.headers.get("x-content-type-options") == "nosniff"
        assert response.headers.get("x-frame-options") == "DENY"
        assert response.headers.get("cache-control") == "no-store"
        audit = _Audit()
        audit.feed(response.text)
        assert not audit.problems, (response.url, audit.problems)
    assert "<script>alert" not in response.text, response.url
    assert "<img src=x" not in response.text, response.url
    assert 'href="javascript:' not in response.text.lower(), response.url


# Helpers ----------------------------------------------------------------------------------
def console_routes() -> list[Any]:
    return [r for r in ROUTES if hasattr(r, "methods") and r.path != "/console/static"]


def inbound(
    text: str,
    *,
    name: str = "Ana Lima",
    wa_id: str = CUSTOMER,
    number: str = NUMBER_A,
    kind: str = "text",
    content: dict[str, Any] | None = None,
) -> bytes:
    """A webhook from Meta with one message to `number`."""
    message: dict[str, Any] = {
        "from": wa_id,
        "id": "wamid." + uuid.uuid4().hex,
        "timestamp": str(int(time.time())),
        "type": kind,
        kind: content if content is not None else {"body": text},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": number},
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": [message],
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(body).encode()


async def customer_writes(app: Running, db: asyncpg.Connection, text: str, **kwargs: Any) -> int:
    """A customer writes to number A (or `number`); the contact's id once it is stored."""
    posted = await app.post_webhook(inbound(text, **kwargs))
    assert posted.status_code == 200, posted.text
    await wait_idle(db)
    found = await db.fetchval(
        "SELECT id FROM contacts WHERE phone_number_id = $1 AND wa_id = $2",
        kwargs.get("number", NUMBER_A),
        kwargs.get("wa_id", CUSTOMER),
    )
    assert found is not None
    return int(found)


async def raw(
    app: Running, method: str, path: str, cookie: str | None = None, **kwargs: Any
) -> httpx.Response:
    """One request with exactly this session cookie (and nothing from a cookie jar)."""
    headers = dict(kwargs.pop("headers", {}))
    if cookie is not None:
        headers["cookie"] = f"{sessions.COOKIE}={cookie}"
    try:
        return await app.client.request(method, path, headers=headers, **kwargs)
    finally:
        app.client.cookies.clear()  # the app's client stays a cookie-less API client


def cookie_of(user: ConsoleUser) -> str:
    value = user.client.cookies.get(sessions.COOKIE)
    assert value
    return value


def session_cookie(app: Running, *payload: str, age: float = 0.0) -> str:
    """A session cookie validly signed with the app's key (signed `age` seconds ago)."""
    signer = signed_serializer(app.settings, clock=lambda: time.time() - age, salt=sessions.SALT)
    return str(signer.dumps(list(payload)))


def signed_out(response: httpx.Response) -> bool:
    if response.status_code == 303:
        return response.headers["location"].startswith("/console/signin")
    return response.status_code == 401


async def snapshot(db: asyncpg.Connection) -> list[Any]:
    """What a refused request must not change."""
    return [
        await db.fetch(
            "SELECT id, bot_paused, paused_until, tags, notes, fields FROM contacts ORDER BY id"
        ),
        await db.fetchval("SELECT count(*) FROM messages"),
        await db.fetch("SELECT * FROM bots ORDER BY phone_number_id"),
        await db.fetch("SELECT id FROM bot_files ORDER BY id"),
        await db.fetch("SELECT phone_number_id, bot_enabled FROM numbers ORDER BY 1"),
        await db.fetch(
            "SELECT id, name, active, credits_balance, link_generation FROM tenants ORDER BY id"
        ),
        await db.fetchval("SELECT count(*) FROM media"),
    ]


async def add_file(app: Running, api_key: str, title: str = "Menu", number: str = NUMBER_A) -> str:
    added = await app.client.post(
        f"/v1/numbers/{number}/files",
        data={"title": title, "description": title, "type": "document"},
        files={"file": ("menu.pdf", b"%PDF-1.4\n% menu\n", "application/pdf")},
        headers={"authorization": f"Bearer {api_key}"},
    )
    assert added.status_code == 201, added.text
    return str(added.json()["id"])


@pytest.fixture
async def operator(app: Running) -> AsyncIterator[ConsoleUser]:
    async with ConsoleUser(app.base_url) as user:
        await user.sign_in(app.settings.admin_token or "")
        yield user


# Sessions ---------------------------------------------------------------------------------
async def test_forged_tampered_expired_and_foreign_cookies_are_signed_out(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    tenant_id = tenant["id"]
    other = await app.create_tenant("Other Co")
    key_ref = hash_key(tenant["api_key"]).hex()
    async with ConsoleUser(app.base_url) as owner:
        await owner.sign_in(tenant["api_key"])
        good = cookie_of(owner)
    # The cookie is signed, not secret, and holds no secret: no key, no token.
    _, shown = signed_serializer(app.settings, salt=sessions.SALT).loads_unsafe(good)
    assert tenant["api_key"] not in json.dumps(shown)
    assert (await raw(app, "GET", "/console/inbox", good)).status_code == 200

    payload, stamp, signature = good.rsplit(".", 2)
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    as_other = base64.urlsafe_b64encode(
        json.dumps(["key", other["id"], key_ref, "x"], separators=(",", ":")).encode()
    )
    status_link = make_token(app.settings, uuid.UUID(tenant_id))
    signin_nonce = str(
        signed_serializer(app.settings, salt=sessions.SIGNIN_SALT).dumps("some-nonce")
    )
    foreign_key = replace(app.settings, secret_key="another-deployments-secret-key-0123456789")
    forged = {
        "garbage": "garbage",
        "empty": "",
        "flipped signature": f"{payload}.{stamp}.{flipped}",
        "other payload": f"{as_other.decode().rstrip('=')}.{stamp}.{signature}",
        "no signature": f"{payload}.{stamp}",
        "too long": good + "A" * 1100,
        "non-ascii junk": "%FF%FE.%00.x",
        "status-page link": status_link,
        "sign-in nonce": signin_nonce,
        "another key": str(
            signed_serializer(foreign_key, salt=sessions.SALT).dumps(
                ["key", tenant_id, key_ref, "x"]
            )
        ),
        "expired": session_cookie(
            app, "key", tenant_id, key_ref, "x", age=sessions.LIFETIME.total_seconds() + 60
        ),
        "other tenant with this key": session_cookie(app, "key", other["id"], key_ref, "x"),
        "admin with a tenant": session_cookie(
            app, "admin", tenant_id, sessions.admin_ref(app.settings.admin_token or ""), "x"
        ),
        "key without a tenant": session_cookie(app, "key", "", key_ref, "x"),
        "unknown way": session_cookie(app, "owner", tenant_id, key_ref, "x"),
        "wrong admin digest": session_cookie(app, "admin", "", "0" * 32, "x"),
        "unknown key": session_cookie(app, "key", tenant_id, "ab" * 32, "x"),
        "not hex": session_cookie(app, "key", tenant_id, "zz", "x"),
        "stale link generation": session_cookie(app, "link", tenant_id, "7", "x"),
        "link of no tenant": session_cookie(app, "link", str(uuid.uuid4()), "0", "x"),
        "bad tenant id": session_cookie(app, "key", "not-a-uuid", key_ref, "x"),
        "wrong shape": str(
            signed_serializer(app.settings, salt=sessions.SALT).dumps({"via": "admin"})
        ),
    }
    before = await snapshot(db)
    for label, cookie in forged.items():
        for path in ("/console/inbox", "/console/tenants", "/console/live"):
            page = await raw(app, "GET", path, cookie)
            assert signed_out(page), (label, path, page.status_code)
            if page.status_code == 303:
                assert "set-cookie" not in page.headers, label
        fragment = await raw(
            app, "GET", f"/console/inbox/{NUMBER_A}/list", cookie, headers=FRAGMENT
        )
        assert fragment.status_code == 401, (label, fragment.status_code)
        assert_safe(fragment)
        posted = await raw(
            app,
            "POST",
            f"/console/tenants/{tenant_id}/active",
            cookie,
            data={"csrf": "x", "active": "false"},
            headers={"origin": app.base_url},
        )
        assert posted.status_code == 401, (label, posted.status_code)
    assert await snapshot(db) == before
    # Nor is the session cookie a link: not to the status page, not to signing in.
    assert (await raw(app, "GET", f"/t/{good}")).status_code in (404, 410)
    async with httpx.AsyncClient(base_url=app.base_url) as browser:
        page = await browser.get(f"/console/link/{good}")
        opened = await browser.post(
            f"/console/link/{good}",
            data={"nonce": nonce_of(page.text)},
            headers={"origin": app.base_url},
        )
        assert opened.status_code == 404
    # An hour old still opens: the expiry above is the lifetime's, not an accident.
    fresh = session_cookie(app, "key", tenant_id, key_ref, "x", age=3600)
    assert (await raw(app, "GET", "/console/inbox", fresh)).status_code == 200


async def open_stream(
    client: httpx.AsyncClient, lines: list[str], statuses: list[int] | None = None
) -> asyncio.Task[None]:
    """The live stream read into `lines` until it ends; its status in `statuses`."""

    async def read() -> None:
        async with client.stream("GET", "/console/live") as stream:
            if statuses is not None:
                statuses.append(stream.status_code)
            if stream.status_code != 200:
                return
            async for line in stream.aiter_lines():
                lines.append(line)
        lines.append("(ended)")

    task = asyncio.create_task(read())
    async with asyncio.timeout(5):
        while not lines and not task.done():
            await asyncio.sleep(0.02)
    return task


async def test_a_revoked_key_a_newer_invitation_and_a_deleted_tenant_end_their_sessions(
    app: Running,
    tenant: dict[str, Any],
    operator: ConsoleUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The live stream checks its session as often as it sends a heartbeat.
    monkeypatch.setattr(views, "HEARTBEAT_SECONDS", 0.2)
    tenant_id = tenant["id"]
    created = await app.client.post(f"/v1/admin/tenants/{tenant_id}/keys", headers=app.admin())
    assert created.status_code == 201
    second_key = created.json()["api_key"]
    keys = (await app.client.get(f"/v1/admin/tenants/{tenant_id}/keys", headers=app.admin())).json()
    first_key_id = next(k["id"] for k in keys["data"] if k["id"] != created.json()["id"])

    async with (
        ConsoleUser(app.base_url) as first,
        ConsoleUser(app.base_url) as second,
        ConsoleUser(app.base_url) as linked,
    ):
        await first.sign_in(tenant["api_key"])
        await second.sign_in(second_key)
        lines: list[str] = []
        stream = await open_stream(first.client, lines)
        revoked = await app.client.delete(
            f"/v1/admin/tenants/{tenant_id}/keys/{first_key_id}", headers=app.admin()
        )
        assert revoked.status_code == 200
        assert signed_out(await first.get("/console/inbox"))
        assert signed_out(await first.post(f"/console/inbox/{NUMBER_A}/1/pause", {}))
        # The open stream ends too, telling the page to refresh (which finds it signed out).
        async with asyncio.timeout(5):
            await stream
        assert lines[-4:] == ["event: refresh", "data: ", "", "(ended)"], lines
        assert (await second.get("/console/inbox")).status_code == 200

        # The invitation's link signs in; a newer invitation ends that session and the link.
        old_token = console_token(app.settings, uuid.UUID(tenant_id))
        page = await linked.get(f"/console/link/{old_token}")
        assert "wa_console=" not in page.headers.get("set-cookie", "")  # a GET signs nobody in
        signed = await linked.client.post(
            f"/console/link/{old_token}",
            data={"nonce": nonce_of(page.text)},
            headers={"origin": app.base_url},
        )
        assert signed.status_code == 303, signed.text
        assert (await linked.get("/console/inbox")).status_code == 200
        invited = await operator.post(
            f"/console/tenants/{tenant_id}/invite", {"email": "owner@example.com"}
        )
        assert invited.status_code == 200, invited.text
        new_link = re.search(
            r'id="console-link"[^>]*value="[^"]*(/console/link/[^"]+)"', invited.text
        )
        assert new_link
        assert signed_out(await linked.get("/console/inbox"))
        again = await linked.get(f"/console/link/{old_token}")
        reused = await linked.client.post(
            f"/console/link/{old_token}",
            data={"nonce": nonce_of(again.text)},
            headers={"origin": app.base_url},
        )
        assert reused.status_code == 404
        assert "wa_console=" not in reused.headers.get("set-cookie", "")
        expired = console_token(
            app.settings, uuid.UUID(tenant_id), generation=1, clock=lambda: time.time() - 8 * 86400
        )
        stale = await linked.client.post(
            f"/console/link/{expired}",
            data={"nonce": nonce_of((await linked.get(f"/console/link/{expired}")).text)},
            headers={"origin": app.base_url},
        )
        assert stale.status_code == 404
        fresh = await linked.client.post(
            new_link.group(1),
            data={"nonce": nonce_of((await linked.get(new_link.group(1))).text)},
            headers={"origin": app.base_url},
        )
        assert fresh.status_code == 303

        # Deleted: every session of the tenant is signed out.
        await operator.post(f"/console/tenants/{tenant_id}/active", {"active": "false"})
        deleted = await app.client.delete(f"/v1/admin/tenants/{tenant_id}", headers=app.admin())
        assert deleted.status_code == 200, deleted.text
        for user in (second, linked):
            assert signed_out(await user.get("/console/inbox"))
            assert signed_out(await user.get("/console/my-numbers"))
            assert signed_out(await user.get("/console/live"))


async def test_an_operator_session_ends_when_the_admin_token_changes(
    app: Running, operator: ConsoleUser
) -> None:
    cookie = cookie_of(operator)
    assert (await raw(app, "GET", "/console/tenants", cookie)).status_code == 200
    # The same database and key, restarted with a new admin token (and an https address).
    changed = replace(
        app.settings, admin_token="adm_rotated-" + "x" * 24, public_url="https://console.example"
    )
    async with serve(changed, run_worker=False, sandbox=app.sandbox) as restarted:
        for path in ("/console/tenants", "/console/live", "/console/events"):
            assert signed_out(await raw(restarted, "GET", path, cookie)), path
        assert signed_out(
            await raw(
                restarted,
                "POST",
                "/console/tenants",
                cookie,
                data={"csrf": operator.csrf, "name": "Sneaky"},
                headers={"origin": restarted.base_url},
            )
        )
        # Behind https, every cookie is Secure (and still HttpOnly, SameSite=Strict, /console).
        form = await raw(restarted, "GET", "/console/signin")
        nonce_cookie = form.headers["set-cookie"]
        for flag in ("HttpOnly", "SameSite=strict", "Path=/console", "Secure"):
            assert flag in nonce_cookie, nonce_cookie
        nonce_value = re.search(r"wa_console_signin=([^;]+)", nonce_cookie)
        assert nonce_value
        signed = await restarted.client.post(
            "/console/signin",
            data={"nonce": nonce_of(form.text), "token": changed.admin_token, "next": "/console/"},
            headers={
                "origin": restarted.base_url,
                "cookie": f"{sessions.SIGNIN_COOKIE}={nonce_value.group(1)}",
            },
        )
        restarted.client.cookies.clear()
        assert signed.status_code == 303, signed.text
        session = next(
            c for c in signed.headers.get_list("set-cookie") if c.startswith("wa_console=")
        )
        for flag in ("HttpOnly", "SameSite=strict", "Path=/console", "Secure", "Max-Age=43200"):
            assert flag in session, session


# A deactivated tenant ---------------------------------------------------------------------
async def test_a_deactivated_tenant_reads_but_every_post_is_refused(
    app: Running, tenant: dict[str, Any], operator: ConsoleUser, db: asyncpg.Connection
) -> None:
    contact = await customer_writes(app, db, "Hello there")
    file_id = await add_file(app, tenant["api_key"])
    token = console_token(app.settings, uuid.UUID(tenant["id"]))
    async with ConsoleUser(app.base_url) as by_key, ConsoleUser(app.base_url) as by_link:
        await by_key.sign_in(tenant["api_key"])
        page = await by_link.get(f"/console/link/{token}")
        signed = await by_link.client.post(
            f"/console/link/{token}",
            data={"nonce": nonce_of(page.text)},
            headers={"origin": app.base_url},
        )
        assert signed.status_code == 303
        by_link.csrf = csrf_of((await by_link.get("/console/inbox")).text)
        off = await operator.post(f"/console/tenants/{tenant['id']}/active", {"active": "false"})
        assert off.status_code == 303
        before = await snapshot(db)
        thread = f"/console/inbox/{NUMBER_A}/{contact}"
        for user in (by_key, by_link):
            for path in (
                "/console/inbox",
                thread,
                f"/console/inbox/{NUMBER_A}/list",
                f"{thread}/messages",
                f"{thread}/panel",
                "/console/my-numbers",
                f"/console/my-numbers/{NUMBER_A}",
                f"/console/my-numbers/{NUMBER_A}/session",
                "/console/my-usage",
            ):
                read = await user.get(path)
                assert read.status_code == 200, (path, read.status_code)
                assert_safe(read)
            assert "This account is deactivated" in (await user.get(thread)).text
            for path, form in (
                (f"{thread}/send", {"body": "still here?"}),
                (f"{thread}/pause", {"minutes": "5"}),
                (f"{thread}/resume", {}),
                (f"{thread}/contact", {"tags": "vip", "notes": "n", "fields": "a=b"}),
                (f"/console/my-numbers/{NUMBER_A}/bot", {"instructions": "changed"}),
                (f"/console/my-numbers/{NUMBER_A}/files/{file_id}/delete", {}),
            ):
                refused = await user.post(path, form)
                assert refused.status_code == 403, (path, refused.status_code, refused.text)
                assert_safe(refused)
            attached = await user.post(
                f"{thread}/send",
                {"body": "file"},
                files={"file": ("a.pdf", b"%PDF-1.4 x", "application/pdf")},
            )
            assert attached.status_code == 403, attached.text
            # The preview of the form saves nothing: a read.
            preview = await user.post(
                f"/console/my-numbers/{NUMBER_A}/bot", {"instructions": "draft", "preview": "1"}
            )
            assert preview.status_code == 200
        assert await snapshot(db) == before
        # A link does not sign anyone in to a deactivated tenant.
        again = await by_link.get(f"/console/link/{token}")
        refused_link = await by_link.client.post(
            f"/console/link/{token}",
            data={"nonce": nonce_of(again.text)},
            headers={"origin": app.base_url},
        )
        assert refused_link.status_code == 404


# CSRF -------------------------------------------------------------------------------------
FORM = {
    "body": "forged",
    "minutes": "5",
    "tags": "forged",
    "notes": "forged",
    "fields": "forged=yes",
    "active": "false",
    "amount": "1000",
    "reason": "forged",
    "email": "attacker@example.com",
    "name": "Forged Co",
    "bot_enabled": "false",
    "enabled": "on",
    "instructions": "forged",
    "next": "/console/",
}
OPERATOR_PREFIXES = (
    "/console/tenants",
    "/console/numbers",
    "/console/events",
    "/console/usage",
    "/console/ai",
)


async def test_every_form_refuses_missing_foreign_and_cross_site_tokens(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    contact = await customer_writes(app, db, "Hello")
    file_id = await add_file(app, tenant["api_key"])
    message_id = await db.fetchval("SELECT id FROM messages LIMIT 1")
    values = {
        "phone_number_id": NUMBER_A,
        "contact_id": str(contact),
        "tenant_id": tenant["id"],
        "file_id": file_id,
        "message_id": str(message_id),
        "broadcast_id": str(uuid.uuid4()),  # the CSRF check comes before any lookup
        "action": "pause",
    }
    before = [await snapshot(db), await db.fetchval("SELECT count(*) FROM audit_log")]
    async with (
        ConsoleUser(app.base_url) as operator,
        ConsoleUser(app.base_url) as operator_too,
        ConsoleUser(app.base_url) as owner,
        ConsoleUser(app.base_url) as owner_too,
    ):
        await operator.sign_in(app.settings.admin_token or "")
        await operator_too.sign_in(app.settings.admin_token or "")
        await owner.sign_in(tenant["api_key"])
        await owner_too.sign_in(tenant["api_key"])
        # Each session has a token of its own, even for the same key.
        assert owner.csrf != owner_too.csrf and operator.csrf != operator_too.csrf
        port = urlsplit(app.base_url).port
        walked = 0
        for route in console_routes():
            if "POST" not in route.methods or route.path in (
                "/console/signin",
                "/console/link/{token}",
            ):
                continue
            path = route.path
            for name in re.findall(r"\{(\w+)\}", route.path):
                path = path.replace("{" + name + "}", values[name])
            operator_page = route.path.startswith(OPERATOR_PREFIXES)
            user, other = (operator, operator_too) if operator_page else (owner, owner_too)
            own = user.csrf
            same = {"origin": app.base_url}
            attempts: list[tuple[str, dict[str, str], dict[str, str]]] = [
                ("no token", {}, same),
                ("another session's token", {"csrf": other.csrf}, same),
                ("another session's header", {}, {**same, "x-csrf-token": other.csrf}),
                ("empty token", {"csrf": ""}, same),
                ("other site", {"csrf": own}, {"origin": "https://evil.example"}),
                ("opaque origin", {"csrf": own}, {"origin": "null"}),
                ("other port", {"csrf": own}, {"origin": f"http://127.0.0.1:{(port or 0) + 1}"}),
                ("other scheme", {"csrf": own}, {"origin": app.base_url.replace("http", "https")}),
                ("cross-site fetch", {"csrf": own}, {"sec-fetch-site": "cross-site"}),
                ("same-site fetch", {"csrf": own}, {"sec-fetch-site": "same-site"}),
            ]
            for label, token, headers in attempts:
                walked += 1
                response = await user.client.post(path, data={**FORM, **token}, headers=headers)
                assert response.status_code == 403, (label, path, response.status_code)
                assert_safe(response)
            if route.path.endswith("/send"):
                for headers in ({"origin": "https://evil.example"}, {}):
                    response = await user.client.post(
                        path,
                        data={"csrf": own if headers else "forged", "body": "x"},
                        files={"file": ("a.pdf", b"%PDF-1.4 x", "application/pdf")},
                        headers=headers,
                    )
                    assert response.status_code == 403, response.text
        assert walked > 100
        # Still signed in: signing out needs the token too.
        assert (await owner.get("/console/inbox")).status_code == 200
        assert (await operator.get("/console/tenants")).status_code == 200
    assert [await snapshot(db), await db.fetchval("SELECT count(*) FROM audit_log")] == before


async def test_signing_in_refuses_forms_from_other_sites_and_stale_nonces(
    app: Running, tenant: dict[str, Any]
) -> None:
    token = console_token(app.settings, uuid.UUID(tenant["id"]))
    for path, fields in (
        ("/console/signin", {"token": tenant["api_key"], "next": "/console/"}),
        (f"/console/link/{token}", {}),
    ):
        async with (
            httpx.AsyncClient(base_url=app.base_url) as attacker,
            httpx.AsyncClient(base_url=app.base_url) as victim,
        ):
            # The attacker's own nonce, posted from the victim's browser (no nonce cookie there).
            nonce = nonce_of((await attacker.get(path)).text)
            stolen = await victim.post(
                path, data={**fields, "nonce": nonce}, headers={"origin": app.base_url}
            )
            assert stolen.status_code == 403, path
            # The victim's own form, posted from elsewhere.
            mine = nonce_of((await victim.get(path)).text)
            for headers in (
                {"origin": "https://evil.example"},
                {"origin": "null"},
                {"sec-fetch-site": "cross-site"},
                {"sec-fetch-site": "same-site"},
            ):
                refused = await victim.post(path, data={**fields, "nonce": mine}, headers=headers)
                assert refused.status_code == 403, (path, headers)
                assert "wa_console=" not in refused.headers.get("set-cookie", "")
                assert_safe(refused)
            for nonce_value in ("", mine + "x", nonce):
                wrong = await victim.post(
                    path, data={**fields, "nonce": nonce_value}, headers={"origin": app.base_url}
                )
                assert wrong.status_code == 403, (path, nonce_value)
            # A nonce cookie older than its lifetime, or signed for the session, opens nothing.
            old = signed_serializer(
                app.settings, clock=lambda: time.time() - 31 * 60, salt=sessions.SIGNIN_SALT
            ).dumps("old-nonce")
            as_session = signed_serializer(app.settings, salt=sessions.SALT).dumps("old-nonce")
            for cookie in (old, as_session):
                victim.cookies.clear()
                expired = await victim.post(
                    path,
                    data={**fields, "nonce": "old-nonce"},
                    headers={
                        "origin": app.base_url,
                        "cookie": f"{sessions.SIGNIN_COOKIE}={cookie}",
                    },
                )
                assert expired.status_code == 403, path
            assert "wa_console" not in {c.name for c in victim.cookies.jar if c.value} - {
                sessions.SIGNIN_COOKIE
            }


def inside_console(base_url: str, location: str) -> bool:
    """Where a browser goes with this Location: a page of the console on this site."""
    target = urlsplit(urljoin(base_url + "/", location))
    path = posixpath.normpath(unquote(target.path))
    return target.netloc == urlsplit(base_url).netloc and (
        path == "/console" or path.startswith("/console/")
    )


NEXT_ATTEMPTS = (
    "//evil.example",
    "//evil.example/console/",
    "/\\evil.example",
    "/\\/evil.example/console/",
    "https://evil.example/console/",
    "http:evil.example",
    "\t//evil.example/console/",
    " //evil.example/console/",
    "/console/../x",
    "/console/../../evil.example",
    "/console/..//evil.example",
    "/console/%2e%2e/v1/admin/tenants",
    "/console/%2E%2E/x",
    "/console/.%2e/x",
    "/console/..%2fx",
    "/console/./../t/",
    "javascript:alert(1)//console/",
    "/console/\r\nset-cookie: x=1",
)


async def test_next_never_leaves_the_console(
    app: Running, tenant: dict[str, Any], operator: ConsoleUser
) -> None:
    for attempt in NEXT_ATTEMPTS:
        async with httpx.AsyncClient(base_url=app.base_url) as browser:
            form = await browser.get("/console/signin", params={"next": attempt})
            shown = re.search(r'name="next" value="([^"]*)"', form.text)
            assert shown and inside_console(app.base_url, shown.group(1)), (attempt, shown)
            signed = await browser.post(
                "/console/signin",
                data={"nonce": nonce_of(form.text), "token": tenant["api_key"], "next": attempt},
                headers={"origin": app.base_url},
            )
            assert signed.status_code == 303
            location = signed.headers["location"]
            assert inside_console(app.base_url, location), (attempt, location)
            assert "\n" not in location and "\r" not in location
        switched = await operator.post(
            f"/console/numbers/{NUMBER_A}/bot", {"bot_enabled": "true", "next": attempt}
        )
        assert switched.status_code == 303
        assert inside_console(app.base_url, switched.headers["location"]), attempt
    # A page of the console is where one goes after signing in (its query kept).
    async with httpx.AsyncClient(base_url=app.base_url) as browser:
        first = await browser.get("/console/inbox?number=" + NUMBER_B)
        assert (
            first.headers["location"]
            == "/console/signin?next=/console/inbox%3Fnumber%3D" + NUMBER_B
        )
        form = await browser.get(first.headers["location"])
        signed = await browser.post(
            "/console/signin",
            data={
                "nonce": nonce_of(form.text),
                "token": tenant["api_key"],
                "next": f"/console/inbox?number={NUMBER_B}",
            },
            headers={"origin": app.base_url},
        )
        assert signed.headers["location"] == f"/console/inbox?number={NUMBER_B}"


# Markup in everything a page shows --------------------------------------------------------
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


async def hostile_data(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> dict[str, Any]:
    """Every text a page shows, from the customer, the business, Meta or the database, set to
    markup: contact names and ids, message texts, transcripts, file names, Meta's failure
    reasons, template names and texts, tags, notes, fields, tenant names, ledger notes, model
    names, audit events, number names and states, bot texts and file titles."""
    tenant_id = uuid.UUID(tenant["id"])
    writer = await customer_writes(app, db, PAYLOAD, name=PAYLOAD)
    sender = await customer_writes(
        app,
        db,
        "",
        name=JS_URL,
        wa_id="16505550000",
        kind="document",
        content={
            "caption": PAYLOAD,
            "filename": PAYLOAD,
            "mime_type": "text/html",
            "sha256": "x",
            "id": "1379017147053999",
        },
    )
    await db.execute(
        "UPDATE contacts SET username = $2, user_id = $2 WHERE id = $1", sender, PAYLOAD
    )
    rows = {
        "failed": (
            "out",
            "text",
            "Sorry?",
            None,
            "failed",
            [
                {
                    "code": 131047,
                    "title": PAYLOAD,
                    "message": PAYLOAD,
                    "error_data": {"details": PAYLOAD},
                }
            ],
            {},
        ),
        "template": (
            "out",
            "template",
            None,
            None,
            "read",
            [],
            {
                "name": PAYLOAD,
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": PAYLOAD}]}],
            },
        ),
        "voice": ("in", "audio", None, PAYLOAD, "received", [], {"id": "media-voice"}),
        "page": ("in", "image", PAYLOAD, PAYLOAD, "received", [], {"id": "media-page"}),
        "svg": (
            "in",
            "document",
            None,
            None,
            "received",
            [],
            {"id": "media-svg", "filename": PAYLOAD},
        ),
    }
    ids: dict[str, Any] = {"writer": writer, "sender": sender}
    for key, (direction, kind, text, understood, status, errors, content) in rows.items():
        ids[key] = await db.fetchval(
            """INSERT INTO messages (tenant_id, phone_number_id, contact_id, direction, type,
                                     text, media_text, payload, status, errors, author, sent_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'human', now())
               RETURNING id""",
            tenant_id,
            NUMBER_A,
            writer,
            direction,
            kind,
            text,
            understood,
            {"type": kind, kind: content},
            status,
            errors,
        )
    for key, mime, content in (
        ("voice", "audio/ogg", b"OggS"),
        ("page", "text/html", b"<script>alert(document.cookie)</script>"),
        ("svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
    ):
        await db.execute(
            """INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, mime_type,
                                  sha256, size, content, state)
               VALUES ($1, $2, $3, $4, $5, 'abc', $6, $7, 'stored')""",
            tenant_id,
            NUMBER_A,
            f"media-{key}",
            ids[key],
            mime,
            len(content),
            content,
        )
    await db.execute(
        """UPDATE numbers SET verified_name = $2, quality_rating = $2, messaging_limit = $2,
                              flagged_reason = $2 WHERE phone_number_id = $1""",
        NUMBER_A,
        PAYLOAD,
    )
    await db.execute(
        "UPDATE numbers SET display_phone_number = $2 WHERE phone_number_id = $1", NUMBER_B, PAYLOAD
    )
    # Outside the window: the composer offers the number's templates.
    await db.execute(
        "UPDATE contacts SET last_inbound_at = now() - interval '25 hours' WHERE id = $1", writer
    )
    await db.execute(
        """INSERT INTO templates (waba_id, name, language, status, components)
           VALUES ($1, $2, $3, 'APPROVED', $4)""",
        WABA,
        PAYLOAD,
        PAYLOAD,
        [
            {"type": "HEADER", "format": "TEXT", "text": PAYLOAD},
            {"type": "BODY", "text": PAYLOAD + " {{1}}"},
        ],
    )
    bot = await app.client.put(
        f"/v1/numbers/{NUMBER_A}/bot",
        json={
            "instructions": "{{business_name}} {{contact_name}} " + PAYLOAD,
            "fallback_text": PAYLOAD,
            "out_of_credits_text": PAYLOAD,
        },
        headers={"authorization": f"Bearer {tenant['api_key']}"},
    )
    assert bot.status_code == 200, bot.text
    # The API refuses such a tool name and address; the page must not trust the row either.
    await db.execute(
        "UPDATE bots SET model = $2, tools = $3 WHERE phone_number_id = $1",
        NUMBER_A,
        PAYLOAD,
        [{"name": PAYLOAD, "method": PAYLOAD, "url": JS_URL + "//" + PAYLOAD}],
    )
    await add_file(app, tenant["api_key"], title=PAYLOAD)
    renamed = await app.client.patch(
        f"/v1/admin/tenants/{tenant_id}",
        json={"name": PAYLOAD, "email": "a@example.com"},
        headers=app.admin(),
    )
    assert renamed.status_code == 200, renamed.text
    credited = await app.client.post(
        f"/v1/admin/tenants/{tenant_id}/credits",
        json={"amount": 10, "reason": PAYLOAD},
        headers=app.admin(),
    )
    assert credited.status_code in (200, 201), credited.text
    await db.execute(
        """INSERT INTO token_usage (tenant_id, phone_number_id, model, feature, day, calls,
                                    input_tokens, output_tokens)
           VALUES ($1, $2, $3, 'reply', current_date, 1, 10, 10)""",
        tenant_id,
        PAYLOAD,
        PAYLOAD,
    )
    await db.execute(
        """INSERT INTO audit_log (tenant_id, actor, severity, action, detail)
           VALUES ($1, $2, 'error', $2, $3)""",
        tenant_id,
        PAYLOAD,
        {PAYLOAD: PAYLOAD, "url": JS_URL},
    )
    return ids


async def test_markup_in_any_data_is_shown_as_text_on_every_page(
    app: Running, tenant: dict[str, Any], operator: ConsoleUser, db: asyncpg.Connection
) -> None:
    ids = await hostile_data(app, tenant, db)
    writer, sender = ids["writer"], ids["sender"]
    async with ConsoleUser(app.base_url) as owner:
        await owner.sign_in(tenant["api_key"])
        # The contact's memory through the console's own form.
        saved = await owner.post(
            f"/console/inbox/{NUMBER_A}/{writer}/contact",
            {"tags": SHORT, "notes": PAYLOAD, "fields": "favourite=" + PAYLOAD},
        )
        assert saved.status_code == 303, saved.text
        thread = f"/console/inbox/{NUMBER_A}/{writer}"
        pages = {
            "inbox": await owner.get("/console/inbox"),
            "search": await owner.get("/console/inbox", params={"q": PAYLOAD}),
            "other number": await owner.get(
                "/console/inbox", params={"q": JS_URL, "number": NUMBER_B}
            ),
            "thread": await owner.get(thread, params={"q": PAYLOAD}),
            "sender": await owner.get(f"/console/inbox/{NUMBER_A}/{sender}"),
            "list": await owner.get(
                f"/console/inbox/{NUMBER_A}/list", params={"q": PAYLOAD}, headers=FRAGMENT
            ),
            "messages": await owner.get(f"{thread}/messages", headers=FRAGMENT),
            "panel": await owner.get(f"{thread}/panel", headers=FRAGMENT),
            "sender panel": await owner.get(
                f"/console/inbox/{NUMBER_A}/{sender}/panel", headers=FRAGMENT
            ),
            "numbers": await owner.get("/console/my-numbers"),
            "number": await owner.get(f"/console/my-numbers/{NUMBER_A}"),
            "number b": await owner.get(f"/console/my-numbers/{NUMBER_B}"),
            "session": await owner.get(f"/console/my-numbers/{NUMBER_A}/session", headers=FRAGMENT),
            "usage": await owner.get("/console/my-usage"),
            # Typed values shown back: a preview, and refusals that name what was typed.
            "preview": await owner.post(
                f"/console/my-numbers/{NUMBER_A}/bot",
                {
                    "instructions": PAYLOAD + " {{contact_name}}",
                    "timezone": PAYLOAD,
                    "preview": "1",
                },
            ),
            "bad bot": await owner.post(
                f"/console/my-numbers/{NUMBER_A}/bot", {"timezone": PAYLOAD, "model": PAYLOAD}
            ),
            "bad field": await owner.post(f"{thread}/contact", {"fields": PAYLOAD + "=x"}),
            "bad tag": await owner.post(f"{thread}/contact", {"tags": PAYLOAD * 2}),
            "bad pause": await owner.post(f"{thread}/pause", {"minutes": PAYLOAD}),
            "bad template": await owner.post(
                f"{thread}/send", {"template": PAYLOAD, "language": PAYLOAD}
            ),
            "closed window": await owner.post(f"{thread}/send", {"body": PAYLOAD}),
        }
        for label, page in pages.items():
            assert page.status_code in (200, 400, 403, 422), (label, page.status_code)
            assert_safe(page)
        tool = "<code>&#34;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;" + ESCAPED
        assert tool in pages["number"].text  # the tool's name, as text
        for label in (
            "inbox",
            "search",
            "thread",
            "sender",
            "list",
            "messages",
            "panel",
            "sender panel",
            "numbers",
            "number",
            "number b",
            "session",
            "usage",
            "preview",
            "bad bot",
        ):
            assert ESCAPED in pages[label].text, label
        whole = (await owner.get(thread)).text
        for needle in (
            "Not delivered: &#34;&#39;&gt;&lt;img",  # Meta's reason
            "&lt;img src=x onerror=alert(1)&gt;",  # the contact's name and text
            'name="template" value="&#34;&#39;&gt;&lt;img',  # a template's name in a form
        ):
            assert needle in whole, needle
        # A customer's file is never a page of ours: not inline, not sniffed, sandboxed.
        for key in ("page", "svg"):
            served = await owner.get(f"/console/media/{ids[key]}")
            assert served.status_code == 200
            assert served.headers["content-disposition"].startswith("attachment")
            assert served.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in served.headers["content-security-policy"]
    operator_pages = [
        await operator.get("/console/tenants"),
        await operator.get(f"/console/tenants/{tenant['id']}"),
        await operator.get("/console/numbers"),
        await operator.get("/console/numbers", headers=FRAGMENT),
        await operator.get("/console/events"),
        await operator.get("/console/events", params={"tenant": tenant["id"], "severity": "error"}),
        await operator.get("/console/usage"),
        await operator.get("/console/ai"),
        await operator.post("/console/tenants", {"name": PAYLOAD, "email": JS_URL}),
        await operator.post("/console/tenants", {"name": PAYLOAD, "email": ""}),
        await operator.post(f"/console/tenants/{tenant['id']}/invite", {"email": PAYLOAD}),
        await operator.post(f"/console/tenants/{tenant['id']}/invite", {"email": "a@example.com"}),
        await operator.post(
            f"/console/tenants/{tenant['id']}/credits", {"amount": PAYLOAD, "reason": PAYLOAD}
        ),
    ]
    for page in operator_pages:
        assert page.status_code in (200, 201, 422), (page.url, page.status_code)
        assert_safe(page)
    assert ESCAPED in operator_pages[0].text and ESCAPED in operator_pages[4].text


async def test_a_qr_code_is_only_ever_a_png_or_jpeg_image() -> None:
    """The QR's data: address goes into an <img src>: only the base64 PNG or JPEG the web
    session's webhook accepts (inbound/sessions.py), never an SVG, HTML or a script address."""
    base = {
        "phone_number_id": "5511987654321",
        "provider": "websession",
        "state": "qr",
        "reason": None,
        "pairing_code": "ABCD1234",
        "state_at": datetime.now(UTC),
        "has_token": True,
        "flagged_reason": None,
    }
    good = "data:image/png;base64," + "QUJD" * 10
    assert SessionView.of({**base, "qr_base64": good}).qr_image == good  # type: ignore[arg-type]
    for hostile in (
        "data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+",
        "data:image/svg+xml,<svg onload=alert(1)>",
        'data:image/png;base64,QUJD" onerror="alert(1)',
        "data:image/png,<script>",
        "data:text/html;base64,PHNjcmlwdD4=",
        "javascript:alert(1)",
        "https://evil.example/qr.png",
    ):
        view = SessionView.of({**base, "qr_base64": hostile})  # type: ignore[arg-type]
        assert view.qr_image is None, hostile


# Other tenants' ids -----------------------------------------------------------------------
STREAM_LINE = re.compile(
    r"^(retry: 3000|: ping|event: (message|contact|number|refresh)|data: \d*|)$"
)


async def test_other_tenants_ids_in_paths_queries_media_files_and_the_stream(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    theirs = await customer_writes(app, db, "A's private words", name="Ana Lima")
    message = await db.fetchval("SELECT id FROM messages WHERE contact_id = $1", theirs)
    at = await db.fetchval(
        "SELECT coalesce(sent_at, created_at) FROM messages WHERE id = $1", message
    )
    await db.execute(
        """INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, mime_type,
                              sha256, size, content, state)
           VALUES ($1::uuid, $2, 'm1', $3, 'image/png', 'abc', 3, 'png', 'stored')""",
        tenant["id"],
        NUMBER_A,
        message,
    )
    their_file = await add_file(app, tenant["api_key"])
    intruder = await app.create_tenant("Intruder Co")
    added = await app.add_number(intruder["api_key"], OTHER_NUMBER, OTHER_WABA)
    assert added.status_code == 201, added.text
    mine = await customer_writes(
        app, db, "my words", name="Bea", wa_id="16505559999", number=OTHER_NUMBER
    )
    cursor = (
        base64.urlsafe_b64encode(json.dumps([at.isoformat(), str(message)]).encode())
        .decode()
        .rstrip("=")
    )
    before = await snapshot(db)
    async with ConsoleUser(app.base_url) as user, ConsoleUser(app.base_url) as operator:
        await user.sign_in(intruder["api_key"])
        await operator.sign_in(app.settings.admin_token or "")
        lines: list[str] = []
        stream = await open_stream(user.client, lines)
        not_found = [
            ("GET", "/console/inbox", {"number": NUMBER_A}),
            ("GET", "/console/inbox", {"number": NUMBER_A, "q": "private"}),
            ("GET", "/console/inbox", {"number": "1" * 30}),
            ("GET", f"/console/inbox/{NUMBER_A}/list", {}),
            ("GET", f"/console/inbox/{OTHER_NUMBER}/{theirs}", {}),
            ("GET", f"/console/inbox/{OTHER_NUMBER}/{theirs}/messages", {}),
            ("GET", f"/console/inbox/{OTHER_NUMBER}/{theirs}/panel", {}),
            ("GET", f"/console/inbox/{NUMBER_A}/{mine}", {}),
            ("GET", f"/console/inbox/{NUMBER_A}/{theirs}", {"before": cursor}),
            ("GET", f"/console/inbox/{OTHER_NUMBER}/{2**63}", {}),
            ("GET", f"/console/inbox/{OTHER_NUMBER}/{'9' * 5000}", {}),
            ("GET", f"/console/media/{message}", {}),
            ("GET", f"/console/my-numbers/{NUMBER_A}", {}),
            ("GET", f"/console/my-numbers/{NUMBER_A}/session", {}),
            ("GET", "/console/events", {"tenant": tenant["id"]}),
            ("GET", f"/console/tenants/{tenant['id']}", {}),
            ("POST", f"/console/inbox/{OTHER_NUMBER}/{theirs}/send", {"body": "hi"}),
            ("POST", f"/console/inbox/{OTHER_NUMBER}/{theirs}/pause", {}),
            ("POST", f"/console/inbox/{OTHER_NUMBER}/{theirs}/resume", {}),
            ("POST", f"/console/inbox/{OTHER_NUMBER}/{theirs}/contact", {"notes": "mine now"}),
            ("POST", f"/console/my-numbers/{NUMBER_A}/bot", {"instructions": "x", "preview": "1"}),
            ("POST", f"/console/my-numbers/{NUMBER_A}/bot", {"instructions": "owned"}),
            ("POST", f"/console/my-numbers/{NUMBER_A}/files/{their_file}/delete", {}),
            ("POST", f"/console/my-numbers/{OTHER_NUMBER}/files/{their_file}/delete", {}),
            ("POST", f"/console/numbers/{NUMBER_A}/bot", {"bot_enabled": "false"}),
            ("POST", f"/console/tenants/{tenant['id']}/credits", {"amount": "5", "reason": "x"}),
        ]
        for method, path, params in not_found:
            for headers in ({}, FRAGMENT):
                if method == "GET":
                    response = await user.get(path, params=params, headers=headers)
                else:
                    response = await user.post(path, params, headers=headers)
                assert response.status_code == 404, (method, path, params, response.status_code)
                assert "private words" not in response.text and "Ana Lima" not in response.text
                assert_safe(response)
        # Their ids in queries of my own pages show nothing of theirs.
        for path, params in (
            (f"/console/inbox/{OTHER_NUMBER}/list", {"current": str(theirs)}),
            (f"/console/inbox/{OTHER_NUMBER}/{mine}", {"before": cursor}),
            (f"/console/inbox/{OTHER_NUMBER}/{mine}/messages", {"before": cursor}),
            ("/console/inbox", {"q": "private"}),
            ("/console/inbox", {"q": NUMBER_A}),
            ("/console/my-usage", {}),
        ):
            response = await user.get(path, params=params)
            assert response.status_code == 200, (path, response.status_code)
            assert "private words" not in response.text and "Ana Lima" not in response.text
            if params.get("q") != NUMBER_A:
                assert NUMBER_A not in response.text
        # The operator has no inbox: a business page is not found, even with A's ids.
        for path in (
            "/console/inbox",
            f"/console/media/{message}",
            f"/console/my-numbers/{NUMBER_A}",
        ):
            assert (await operator.get(path)).status_code == 404, path
        # A's customer writes again: the intruder's stream hears nothing of it, and what it
        # hears of its own is a kind and a number, never content.
        await customer_writes(app, db, "more private words", name="Ana Lima")
        await customer_writes(app, db, "mine again", wa_id="16505559999", number=OTHER_NUMBER)
        async with asyncio.timeout(5):
            while f"data: {OTHER_NUMBER}" not in lines:
                await asyncio.sleep(0.02)
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)
        assert all(STREAM_LINE.match(line) for line in lines), lines
        assert f"data: {NUMBER_A}" not in lines
    after = await snapshot(db)
    assert await db.fetchval("SELECT count(*) FROM bot_files WHERE id = $1::uuid", their_file) == 1
    # Only the two new inbound messages changed anything (A's and the intruder's own).
    assert after[0] == before[0] and after[1] == before[1] + 2 and after[2:] == before[2:]


# Bodies, fields and searches --------------------------------------------------------------
async def test_bodies_fields_and_searches_are_bounded(
    app: Running, tenant: dict[str, Any], operator: ConsoleUser, db: asyncpg.Connection
) -> None:
    contact = await customer_writes(app, db, "find me please", name="Ana Lima")
    await customer_writes(app, db, "other words", name="Bob", wa_id="16505550001")
    thread = f"/console/inbox/{NUMBER_A}/{contact}"
    before = await snapshot(db)
    async with ConsoleUser(app.base_url) as owner:
        await owner.sign_in(tenant["api_key"])
        same = {"origin": app.base_url}
        huge = await owner.post(f"{thread}/contact", {"notes": "x" * (300 * 1024)})
        assert huge.status_code == 413
        assert_safe(huge)

        async def chunks() -> AsyncIterator[bytes]:
            yield f"csrf={owner.csrf}&notes=".encode()
            for _ in range(40):
                yield b"y" * 8192

        streamed = await owner.client.post(
            f"{thread}/contact",
            content=chunks(),
            headers={**same, "content-type": "application/x-www-form-urlencoded"},
        )
        assert streamed.status_code == 413
        many = "&".join(f"f{i}=x" for i in range(500))
        fields = await owner.client.post(
            f"{thread}/contact",
            content=f"csrf={owner.csrf}&{many}",
            headers={**same, "content-type": "application/x-www-form-urlencoded"},
        )
        assert fields.status_code == 400
        for body in (b"csrf=" + owner.csrf.encode() + b"&x%FF=%FE", b"\xff\xfe=1"):
            odd = await owner.client.post(
                f"{thread}/contact",
                content=body,
                headers={**same, "content-type": "application/x-www-form-urlencoded"},
            )
            assert odd.status_code in (303, 400), odd.status_code
        nul = await owner.post(f"{thread}/contact", {"notes": "a\x00b"})
        assert nul.status_code == 400
        # A multipart form: the composer's few fields, and no NUL in them either.
        for data, files in (
            ({"body": "a\x00b"}, {"file": ("a.pdf", b"%PDF-1.4 x", "application/pdf")}),
            ({"body": "a\x00b", "template": "x"}, {"file": ("", b"", "application/octet-stream")}),
            (
                {"template": "t\x00", "language": "en"},
                {"file": ("", b"", "application/octet-stream")},
            ),
            ({"body": "x", "extra": "y"}, {"file": ("a.pdf", b"%PDF-1.4 x", "application/pdf")}),
        ):
            odd = await owner.post(f"{thread}/send", data, files=files)
            assert odd.status_code in (400, 413, 422), (data, odd.status_code, odd.text[:300])
            assert_safe(odd)
        boundary = "attack-boundary"
        named = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{owner.csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="a\x00.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 x\r\n'
            f"--{boundary}--\r\n"
        )
        nul_name = await owner.client.post(
            f"{thread}/send",
            content=named.encode(),
            headers={**same, "content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert nul_name.status_code in (400, 422), nul_name.status_code
        # Searches: long, full-text operators, LIKE wildcards, NUL; each a page, never an error.
        long = await owner.get("/console/inbox", params={"q": "find " * 4000})
        assert long.status_code == 200
        assert re.search(r'name="q" type="search" value="(find ){39}find ?"', long.text)
        for q in (
            "a & b | !c :* (x <-> y)",
            "'\\'",
            "%",
            "_",
            "\\",
            "%%%_",
            "((((",
            "a\x00b",
            "\u202e",
        ):
            found = await owner.get("/console/inbox", params={"q": q})
            assert found.status_code == 200, (q, found.status_code)
            assert "Ana Lima" not in found.text and "Bob" not in found.text, q
            fragment = await owner.get(f"/console/inbox/{NUMBER_A}/list", params={"q": q})
            assert fragment.status_code == 200, (q, fragment.status_code)
        assert "Ana Lima" in (await owner.get("/console/inbox", params={"q": "find me"})).text
        for params in (
            {"cursor": "x" * 5000},
            {"cursor": base64.urlsafe_b64encode(b'["9999-99-99", 1]').decode()},
            {"cursor": base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", 1e400]').decode()},
        ):
            bad = await owner.get("/console/inbox", params=params)
            assert bad.status_code == 400, (params, bad.status_code)
        for raw_id in ("9" * 40, "-1", "0", "1e3", "١٢٣"):
            assert (await owner.get(f"/console/inbox/{NUMBER_A}/{raw_id}")).status_code == 404
        assert (await owner.get(f"/console/inbox/{'9' * 400}/1")).status_code == 404
    # The operator's own cursors: never a database error.
    for cursor in (
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "a\\u0000b"]').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", ["x"]]').decode(),
    ):
        page = await operator.get("/console/numbers", params={"cursor": cursor})
        assert page.status_code in (200, 400), page.status_code
    assert await snapshot(db) == before


async def test_an_attachment_waits_for_an_upload_slot_before_its_body_is_read(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    """POST /v1/media lets a tenant read at most two bodies of up to 100 MB at once (a 429
    beyond, before the body is read): the composer's attachments count the same."""
    contact = await customer_writes(app, db, "Send me the menu")
    path = f"/console/inbox/{NUMBER_A}/{contact}/send"
    boundary = "slow-boundary"
    release = asyncio.Event()
    started: list[int] = []
    async with ConsoleUser(app.base_url) as owner:
        await owner.sign_in(tenant["api_key"])
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{owner.csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"'
            "\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 "
        ).encode()

        async def slow_body() -> AsyncIterator[bytes]:
            yield head
            started.append(1)
            await release.wait()
            yield f"slow\r\n--{boundary}--\r\n".encode()

        async def slow_upload() -> httpx.Response:
            async with httpx.AsyncClient(base_url=app.base_url, timeout=15) as client:
                return await client.post(
                    path,
                    content=slow_body(),
                    headers={
                        "origin": app.base_url,
                        "cookie": f"{sessions.COOKIE}={cookie_of(owner)}",
                        "content-type": f"multipart/form-data; boundary={boundary}",
                    },
                )

        slow = [asyncio.create_task(slow_upload()) for _ in range(2)]
        try:
            async with asyncio.timeout(5):
                while len(started) < 2:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # both are being read
            third = await owner.post(
                path, {"body": "menu"}, files={"file": ("b.pdf", b"%PDF-1.4 b", "application/pdf")}
            )
            assert third.status_code == 429, (third.status_code, third.text[:300])
            assert third.headers["retry-after"] == "1"
            assert_safe(third)
            # Text alone needs no slot.
            assert (await owner.post(path, {"body": "one moment"})).status_code == 303
        finally:
            release.set()
            done = await asyncio.gather(*slow, return_exceptions=True)
        assert [getattr(r, "status_code", r) for r in done] == [303, 303]
        # Once they are done, the slots are free again.
        fourth = await owner.post(
            path, {"body": "menu"}, files={"file": ("c.pdf", b"%PDF-1.4 c", "application/pdf")}
        )
        assert fourth.status_code == 303, fourth.text[:300]


# The live stream's limits -----------------------------------------------------------------
async def stream_once(client: httpx.AsyncClient, lines: list[str], statuses: list[int]) -> None:
    async with client.stream("GET", "/console/live") as stream:
        statuses.append(stream.status_code)
        if stream.status_code == 200:
            async for line in stream.aiter_lines():
                lines.append(line)


async def test_one_tenant_cannot_take_every_live_stream(
    app: Running, tenant: dict[str, Any], operator: ConsoleUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "MAX_TENANT_STREAMS", 3)
    monkeypatch.setattr(views, "HEARTBEAT_SECONDS", 0.2)  # a closed stream is noticed soon
    other = await app.create_tenant("Neighbour Co")
    async with ConsoleUser(app.base_url) as greedy, ConsoleUser(app.base_url) as neighbour:
        await greedy.sign_in(tenant["api_key"])
        await neighbour.sign_in(other["api_key"])
        # Ten at once: three streams, the rest refused (none overshoots the cap).
        lines: list[list[str]] = [[] for _ in range(10)]
        statuses: list[int] = []
        tasks = [
            asyncio.create_task(stream_once(greedy.client, lines[i], statuses)) for i in range(10)
        ]
        async with asyncio.timeout(5):
            while len(statuses) < 10 or sum("retry: 3000" in ls for ls in lines) < 3:
                await asyncio.sleep(0.02)
        assert sum("retry: 3000" in ls for ls in lines) == 3
        assert statuses.count(503) >= 7 and set(statuses) <= {200, 503}
        refused = await greedy.get("/console/live")
        assert refused.status_code == 503
        assert_safe(refused)
        # The neighbour and the operator still get theirs.
        for user in (neighbour, operator):
            theirs: list[str] = []
            task = await open_stream(user.client, theirs)
            assert theirs[:1] == ["retry: 3000"]
            task.cancel()
        # Closing a stream frees its place.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        async with asyncio.timeout(5):
            while True:
                again: list[str] = []
                task = await open_stream(greedy.client, again)
                if again[:1] == ["retry: 3000"]:
                    task.cancel()
                    break
                await asyncio.sleep(0.1)


async def test_only_a_watched_tenants_writes_notify(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    """A tenant with no console page open costs no NOTIFY (PostgreSQL queues every notifying
    commit behind the others); one with a page open is told at once, and only about itself."""
    other = await app.create_tenant("Unwatched Co")
    other_number = NUMBER_B  # handed to the other tenant here: a number of a tenant unwatched
    await db.execute(
        "UPDATE numbers SET tenant_id = $2 WHERE phone_number_id = $1",
        other_number,
        uuid.UUID(other["id"]),
    )
    heard: list[str] = []

    def listener(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        heard.append(payload)

    async def touch(number: str, rating: str) -> None:
        await db.execute(
            "UPDATE numbers SET quality_rating = $2 WHERE phone_number_id = $1", number, rating
        )

    async def settled() -> None:
        # A notification travels after its commit: a marker sent last arrives after it.
        await db.execute("SELECT pg_notify($1, 'marker')", "wa_console")
        async with asyncio.timeout(5):
            while "marker" not in heard:
                await asyncio.sleep(0.02)
        heard.remove("marker")

    await db.add_listener("wa_console", listener)
    try:
        await touch(NUMBER_A, "YELLOW")
        await settled()
        assert heard == []  # nobody watches
        async with ConsoleUser(app.base_url) as user:
            await user.sign_in(tenant["api_key"])
            lines: list[str] = []
            stream = await open_stream(user.client, lines)
            assert await db.fetchval(
                "SELECT count(*) FROM console_watch WHERE tenant_id = $1 AND until > now()",
                uuid.UUID(tenant["id"]),
            )
            await touch(NUMBER_A, "RED")
            await touch(other_number, "RED")
            await settled()
            assert heard == [f"{tenant['id']}|number|{NUMBER_A}"]
            async with asyncio.timeout(5):
                while f"data: {NUMBER_A}" not in lines:
                    await asyncio.sleep(0.02)
            # The watch began with this page: it refreshes once more, after a write that began
            # before the watch (so sent no NOTIFY) has had time to commit.
            async with asyncio.timeout(live.WATCH_SETTLE_SECONDS + 3):
                while lines.count("event: refresh") < 2:
                    await asyncio.sleep(0.05)
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)
    finally:
        await db.remove_listener("wa_console", listener)


async def test_console_writes_count_against_the_keys_rate(settings: Settings) -> None:
    """What a console signed in with a key writes spends that key's request rate, as the API
    does (429 with Retry-After past it); another tenant's console is not slowed."""
    limited = replace(settings, api_rate_per_second=2.0, api_rate_burst=5)
    async with serve(limited, run_worker=False) as app:
        busy = await app.create_tenant("Busy")
        calm = await app.create_tenant("Calm")
        async with ConsoleUser(app.base_url) as user, ConsoleUser(app.base_url) as other:
            await user.sign_in(busy["api_key"])
            await other.sign_in(calm["api_key"])
            path = f"/console/inbox/{NUMBER_A}/999/pause"  # no such conversation: 404s
            statuses = [(await user.post(path)).status_code for _ in range(8)]
            assert statuses[:5] == [404] * 5 and 429 in statuses[5:], statuses
            refused = await user.post(path)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert_safe(refused)
            # The key's API calls share the bucket.
            api = await app.client.get(
                "/v1/numbers", headers={"authorization": f"Bearer {busy['api_key']}"}
            )
            assert api.status_code == 429
            assert (await other.post(path)).status_code == 404


async def test_a_stalled_page_holds_a_bounded_queue() -> None:
    """A browser that stops reading: its queue never grows past QUEUE_SIZE, and what it
    missed collapses into one refresh; another tenant's queue gets none of it."""
    hub = live.LiveHub("postgresql://nowhere.invalid/db")
    hub._ready.set()  # as if the LISTEN were in place (there is no database here)
    tenant = uuid.uuid4()
    try:
        async with hub.subscribe(tenant) as queue, hub.subscribe(uuid.uuid4()) as others:
            assert queue is not None and others is not None
            assert queue.get_nowait() == others.get_nowait() == live.REFRESH  # the first one
            for i in range(10 * live.QUEUE_SIZE):
                hub._deliver(f"{tenant}|message|{i}")
            hub._deliver("not-a-uuid|message|1")
            hub._deliver(f"{tenant}|bogus\n|1")
            assert queue.qsize() <= live.QUEUE_SIZE
            assert live.REFRESH in [queue.get_nowait() for _ in range(queue.qsize())]
            assert others.empty()
        assert hub.listening == 0 and hub.has_room(tenant)
    finally:
        await hub.aclose()
    # Only a kind and a number's digits ever reach a stream's lines.
    assert live.parse(f"{tenant}|message|{NUMBER_A}") == (tenant, live.Change("message", NUMBER_A))
    for payload in (
        f"{tenant}|message|1\n\nevent: message\ndata: 2",
        f"{tenant}|message|",
        f"{tenant}|message|١٢٣",
        f"{tenant}|refresh|1",
    ):
        assert live.parse(payload) is None, payload


async def test_a_page_gone_while_the_listen_is_not_ready_frees_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream closed while it waits for the LISTEN (the database unreachable, or the first
    page after a quiet spell) gives its place back: else each such page would keep one of its
    tenant's few places for the life of the process."""
    monkeypatch.setattr(live, "MAX_TENANT_STREAMS", 2)
    hub = live.LiveHub("postgresql://nowhere.invalid/db")
    tenant = uuid.uuid4()
    entered: list[bool] = []

    async def page() -> None:
        async with hub.subscribe(tenant) as queue:
            entered.append(queue is not None)
            await asyncio.sleep(60)

    try:
        for _ in range(5):
            waiting = asyncio.create_task(page())
            await asyncio.sleep(0.05)  # waiting for a LISTEN that is not coming
            assert not entered, "no room left: the pages gone before kept their places"
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        assert hub.listening == 0 and hub.has_room(tenant)
    finally:
        await hub.aclose()


# Headers, cookies and the templates -------------------------------------------------------
async def test_every_html_response_carries_the_policy_and_cookies_are_strict(
    app: Running, tenant: dict[str, Any], operator: ConsoleUser, db: asyncpg.Connection
) -> None:
    contact = await customer_writes(app, db, "Hello")
    message = await db.fetchval("SELECT id FROM messages LIMIT 1")
    file_id = await add_file(app, tenant["api_key"])
    values = {
        "phone_number_id": NUMBER_A,
        "contact_id": str(contact),
        "message_id": str(message),
        "tenant_id": tenant["id"],
        "file_id": file_id,
        "token": console_token(app.settings, uuid.UUID(tenant["id"])),
        "broadcast_id": str(uuid.uuid4()),  # test_console_campaigns.py checks its own pages
        "action": "pause",
    }
    async with (
        ConsoleUser(app.base_url) as owner,
        httpx.AsyncClient(base_url=app.base_url) as anonymous,
    ):
        await owner.sign_in(tenant["api_key"])
        checked = 0
        for route in console_routes():
            path = route.path
            for name in re.findall(r"\{(\w+)\}", route.path):
                path = path.replace("{" + name + "}", values[name])
            if "GET" not in route.methods or path == "/console/live":
                continue
            for client in (owner.client, operator.client, anonymous):
                for headers in ({}, FRAGMENT):
                    response = await client.get(path, headers=headers)
                    checked += 1
                    assert response.status_code in (200, 303, 401, 404), (
                        path,
                        response.status_code,
                    )
                    if response.headers.get("content-type", "").startswith("text/html"):
                        assert_safe(response)
                    elif response.status_code == 303:
                        assert response.headers["content-security-policy"]
                        assert inside_console(app.base_url, response.headers["location"])
                    else:
                        assert path.startswith("/console/media/"), path
                        assert "sandbox" in response.headers["content-security-policy"]
        assert checked > 60
        # Error pages: a bad id, a bad filter, a refused form, a body too big, the stream busy.
        for response in (
            await operator.get("/console/tenants/not-a-uuid"),
            await operator.get("/console/events", params={"severity": "loud"}),
            await owner.get(f"/console/inbox/{NUMBER_A}/not-a-number"),
            await owner.client.post(f"/console/inbox/{NUMBER_A}/{contact}/pause", data={}),
            await owner.post(f"/console/inbox/{NUMBER_A}/{contact}/pause", {"x": "y" * 300_000}),
            await anonymous.post("/console/signin", data={"token": "x"}),
            await anonymous.post("/console/signout"),
        ):
            assert response.status_code in (303, 400, 403, 404, 413), response.status_code
            if response.status_code != 303:
                assert response.headers["content-type"].startswith("text/html")
            assert (
                response.headers["content-security-policy"]
                == views.HEADERS["content-security-policy"]
            )
            assert_safe(response)
        # Neither the console's code nor its templates are files to fetch.
        for path in (
            "/console/static/../views.py",
            "/console/static/%2e%2e/views.py",
            "/console/static/..%2fviews.py",
            "/console/static/../templates/base.html",
            "/console/static/",
        ):
            leaked = await anonymous.get(path)
            assert leaked.status_code == 404, (path, leaked.status_code)
            assert "import" not in leaked.text and "{%" not in leaked.text
        script = await anonymous.get("/console/static/console.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        # Signing out ends the cookie in the browser, with the same flags.
        signout = await owner.post("/console/signout")
        cleared = signout.headers["set-cookie"]
        assert cleared.startswith("wa_console=") and "Max-Age=0" in cleared
        for flag in ("HttpOnly", "SameSite=strict", "Path=/console"):
            assert flag in cleared, cleared


async def test_the_templates_and_script_allow_a_strict_policy() -> None:
    """No inline script, style or handler in any template, no `|safe` nor markup built from
    data outside charts.py (which escapes every label), no address of another site."""
    for template in sorted(TEMPLATES.glob("*.html")):
        text = template.read_text()
        scripts = re.findall(r"<script\b[^>]*>", text, re.I)
        assert scripts in ([], ['<script src="/console/static/console.js" defer>']), template
        assert not re.search(r"<style\b|\sstyle\s*=|\son[a-z]+\s*=", text, re.I), template
        assert not re.search(r"\|\s*safe\b|autoescape\s+false|Markup", text), template
        assert not re.search(r"(src|href|action)=\"(https?:)?//", text), template
        assert "javascript:" not in text.lower(), template
    sources = {p.name: p.read_text() for p in TEMPLATES.parent.glob("*.py")}
    for name, text in sources.items():
        if name != "charts.py":
            assert "Markup(" not in text and "|safe" not in text, name
    script = (STATIC / "console.js").read_text()
    for forbidden in ("eval(", "new Function", "document.write", "insertAdjacentHTML", "http"):
        assert forbidden not in script, forbidden
    # innerHTML only ever takes a fragment fetched from this site (a region's data-src).
    assert script.count("innerHTML") == 1 and "fetch(url," in script
    assert 'new EventSource("/console/live")' in script
    style = (STATIC / "console.css").read_text()
    assert "@import" not in style and not re.search(r"url\((?!\s*['\"]?data:)", style)
