"""The console in a real browser: Playwright for Python driving the system's Chromium.

The app is served on loopback by the fixtures of conftest.py in the test's own event loop, so
the async Playwright API runs beside it. Every page opened here is watched: a console error, a
page error, a Content-Security-Policy violation or a request to any host other than the app's
fails the test. Screenshots of the main pages are kept under the test's tmp path; with
WA_UPDATE_SCREENSHOTS=1 the README's ones in tests/screenshots/ are written again.

Skipped when /usr/bin/chromium is missing (`.ci/run` installs Debian's). Browsers are never
downloaded: `playwright install` is not needed, and not possible here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import (
    NUMBER_A,
    ROOT,
    WABA,
    Meta,
    configure_bot,
    give_credits,
    meta_running,
    sent_to_customer,
    serve_asgi,
)
from wa_cloud.config import Settings

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "tests" / "screenshots"
# The README's images: rewritten only on request, so a test run leaves the tree unchanged.
UPDATE_SCREENSHOTS = os.environ.get("WA_UPDATE_SCREENSHOTS") == "1"
TIMEOUT_MS = 10_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)

# Reported to the test by a binding: Chromium also logs a violation as a console error, but an
# event listener sees every one, with its directive, in any frame.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__waReportViolation(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@dataclass
class Watch:
    """What went wrong in the pages of one browser context."""

    origin: str
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    # Answered with an error status on purpose (a refused sign-in, a 404 for another tenant's
    # conversation): the test asserts the status; Chromium logs each as an error too.
    refused: set[str] = field(default_factory=set)

    def response(self, response: Any) -> None:
        if response.status >= 400 and response.request.resource_type == "document":
            self.refused.add(response.url)

    def request(self, request: Any) -> None:
        url: str = request.url
        if not (url.startswith(self.origin + "/") or url.startswith(("data:", "blob:"))):
            self.foreign.append(url)

    def console(self, message: Any) -> None:
        url = message.location.get("url")
        if message.type == "error" and not (
            url in self.refused and message.text.startswith("Failed to load resource")
        ):
            self.errors.append(f"console: {message.text} ({url})")

    def page_error(self, error: Any) -> None:
        self.errors.append(f"pageerror: {error}")

    def assert_clean(self) -> None:
        assert self.violations == [], self.violations
        assert self.errors == [], self.errors
        assert self.foreign == [], self.foreign


@dataclass
class Browser:
    """One Chromium for a test; `user()` opens a person's own context (cookies, pages)."""

    browser: Any
    watches: dict[Any, Watch] = field(default_factory=dict)

    async def user(self, origin: str, *, watched: bool = True, width: int = 1280) -> Any:
        context = await self.browser.new_context(
            base_url=origin, viewport={"width": width, "height": 800}
        )
        context.set_default_timeout(TIMEOUT_MS)
        if watched:
            watch = Watch(origin)
            self.watches[context] = watch
            await context.expose_binding(
                "__waReportViolation", lambda _source, text: watch.violations.append(text)
            )
            await context.add_init_script(CSP_LISTENER)
            context.on("request", watch.request)
            context.on("response", watch.response)
            context.on("page", lambda page: _watch_page(page, watch))
        return context

    def expect_refused(self, context: Any, url: str) -> None:
        """A request of the context's pages that the test expects to be refused."""
        self.watches[context].refused.add(url)

    def assert_clean(self) -> None:
        for watch in self.watches.values():
            watch.assert_clean()


def _watch_page(page: Any, watch: Watch) -> None:
    page.on("console", watch.console)
    page.on("pageerror", watch.page_error)


async def launch() -> tuple[Any, Any]:
    """Headless system Chromium, driven by Playwright."""
    args = ["--disable-gpu", "--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
    driver = await playwright_api.async_playwright().start()
    try:
        launched = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    except BaseException:
        await driver.stop()
        raise
    return driver, launched


@contextlib.asynccontextmanager
async def console(settings: Settings, **options: Any) -> AsyncIterator[tuple[Meta, Browser]]:
    """The app with the sandbox Meta (conftest's meta_running) and a browser, started side by
    side; every watched page must have stayed clean at the end."""
    launching = asyncio.create_task(launch())
    owned = False
    try:
        async with meta_running(settings, **options) as meta:
            driver, launched = await launching
            owned = True
            browser = Browser(launched)
            try:
                yield meta, browser
            finally:
                # Before the app stops: its live streams end with the pages that hold them.
                await launched.close()
                await driver.stop()
            browser.assert_clean()
    finally:
        # The app failed to start: the browser launched beside it is closed all the same.
        if not owned:
            await asyncio.wait([launching])
            if not launching.cancelled() and launching.exception() is None:
                driver, launched = launching.result()
                await launched.close()
                await driver.stop()


# -- steps --------------------------------------------------------------------------------------


async def sign_in(context: Any, token: str) -> Any:
    """Through the sign-in form, as a person does; the page it lands on."""
    page = await context.new_page()
    await page.goto("/console/signin")
    await page.get_by_label("Admin token or API key").fill(token)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign in").click()
    return page


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def screenshot(page: Any, tmp_path: Path, name: str, *, readme: bool = False) -> Path:
    """A full-page PNG kept with the test's artefacts (and the README's, when updating)."""
    path = tmp_path / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = await page.screenshot(path=str(path), full_page=True)
    width, height = png_size(data)
    assert width >= 320 and height >= 200, (width, height)
    # A blank page compresses to a few hundred bytes; text and bubbles take far more.
    assert len(data) > 15_000, f"{name}: {len(data)} bytes, is the page empty?"
    if readme and UPDATE_SCREENSHOTS:
        SCREENSHOTS.mkdir(exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path


async def wait_live(page: Any) -> None:
    """The page's live stream is connected (console.js marks it on <html>)."""
    # A selector, not a JavaScript predicate: the console's CSP has no 'unsafe-eval', and a
    # string predicate is evaluated with eval() in the page.
    await page.locator("html[data-live='open']").wait_for(state="attached")
    # The stream answers before the process's LISTEN connection (opened by the first page)
    # is up: a change in that gap never reaches the page.
    await asyncio.sleep(0.3)


async def mark_document(page: Any) -> str:
    """A value only this very document holds: a reload or a navigation loses it."""
    marker = f"kept-{id(page)}"
    await page.evaluate(f"window.__waMarker = {marker!r}")
    return marker


async def assert_same_document(page: Any, url: str, marker: str) -> None:
    assert page.url == url
    assert await page.evaluate("window.__waMarker") == marker


async def wait_src_change(page: Any, selector: str, before: str) -> None:
    await page.wait_for_function(
        "([selector, before]) => { const element = document.querySelector(selector);"
        " return element !== null && element.getAttribute('src') !== before; }",
        arg=[selector, before],
    )


async def main_text(page: Any) -> str:
    return str(await page.locator("main").inner_text())


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def continue_with_link(context: Any, link: str) -> Any:
    """The invitation's link, then Continue (a GET alone signs nobody in)."""
    page = await context.new_page()
    await page.goto(link)
    assert [c["name"] for c in await context.cookies()] == ["wa_console_signin"]
    async with page.expect_navigation():
        await page.get_by_role("button", name="Continue").click()
    return page


# -- 1. the operator -----------------------------------------------------------------------------

NEW_TENANT = "Panadería Sol"


async def test_the_operator_creates_a_tenant_and_invites_it_and_the_link_opens_its_inbox(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    async with console(settings) as (meta, browser):
        app = meta.app
        others: dict[str, str] = {}
        for name, email in (("Café Aurora", "hola@aurora.test"), ("Ferretería López", None)):
            created = await app.client.post(
                "/v1/admin/tenants", json={"name": name, "email": email}, headers=app.admin()
            )
            assert created.status_code == 201, created.text
            others[name] = created.json()["id"]
        operator = await browser.user(app.base_url)
        page = await sign_in(operator, app.settings.admin_token or "")
        assert page.url == f"{app.base_url}/console/tenants"

        await page.get_by_label("Name", exact=True).fill(NEW_TENANT)
        await page.get_by_label("Email").fill("owner@panaderia.test")
        async with page.expect_navigation() as created:
            await page.get_by_role("button", name="Create tenant").click()
        assert (await created.value).status == 201
        row = await db.fetchrow("SELECT id, email, active FROM tenants WHERE name = $1", NEW_TENANT)
        assert row is not None and row["email"] == "owner@panaderia.test" and row["active"]
        assert await page.locator("h1").inner_text() == f"{NEW_TENANT} active"
        api_key = await page.get_by_role("textbox", name="API key").input_value()
        assert api_key.startswith("wak_")
        numbers = await app.client.get("/v1/numbers", headers=bearer(api_key))
        assert numbers.status_code == 200, numbers.text  # the key shown is the tenant's
        # Shown once: the tenant's page opened again never holds it.
        tenant_url = f"{app.base_url}/console/tenants/{row['id']}"
        await page.goto(tenant_url)
        assert api_key not in await page.content()
        assert await page.get_by_role("textbox", name="API key").count() == 0

        # No SMTP_URL here: the page says nothing was mailed and shows the links to pass on.
        async with page.expect_navigation():
            await page.get_by_role("button", name="Send invitation").click()
        invitation = page.locator("section[aria-labelledby=invitation]")
        assert "nothing was mailed" in await invitation.inner_text()
        assert "owner@panaderia.test" in await invitation.inner_text()
        console_link = await page.get_by_label("Console sign-in link").input_value()
        assert console_link.startswith(f"{app.base_url}/console/link/")
        failed = await db.fetchval(
            "SELECT detail->>'sent_to' FROM audit_log WHERE action = 'tenant.invite_failed'"
            " AND tenant_id = $1",
            row["id"],
        )
        assert failed == "owner@panaderia.test"

        # Credits with a note, in the ledger and the balance.
        await page.get_by_label("Amount").fill("500")
        await page.get_by_label("Note").fill("Welcome pack")
        async with page.expect_navigation():
            await page.get_by_role("button", name="Add credits").click()
        assert page.url == f"{tenant_url}?notice=credits"
        ledger = page.locator("section[aria-labelledby=credits] tbody tr")
        assert "+500\t500\tWelcome pack" in await ledger.first.inner_text()
        balance = await db.fetchval("SELECT credits_balance FROM tenants WHERE id = $1", row["id"])
        assert balance == 500
        # Deactivating asks first (data-confirm): the operator accepts.
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.goto(f"/console/tenants/{others['Ferretería López']}")
        async with page.expect_navigation():
            await page.get_by_role("button", name="Deactivate").click()
        assert "deactivated" in await page.get_by_role("status").first.inner_text()
        assert not await db.fetchval(
            "SELECT active FROM tenants WHERE id = $1::uuid", others["Ferretería López"]
        )

        await page.get_by_role("link", name="Tenants", exact=True).click()
        await page.wait_for_url(f"{app.base_url}/console/tenants")
        listed = await page.locator("main table tbody tr").all_inner_texts()
        names = [line.split("\t")[0] for line in listed]
        assert names == [NEW_TENANT, "Ferretería López", "Café Aurora", "Sender Co"]
        assert "owner@panaderia.test" in listed[0]
        await screenshot(page, tmp_path, "console-tenants", readme=True)

        # The business opens the link in a browser of its own: signed in, to its inbox.
        business = await browser.user(app.base_url)
        inbox = await continue_with_link(business, console_link)
        assert inbox.url == f"{app.base_url}/console/inbox"
        assert "No numbers yet" in await main_text(inbox)
        # Its session is the tenant's: the operator's pages are not there for it.
        refused = await inbox.goto("/console/tenants")
        assert refused is not None and refused.status == 404


# -- 2. the business's inbox ---------------------------------------------------------------------

CUSTOMER = "16505551234"
LATE_CUSTOMER = "16505559876"  # wrote 25 hours ago: the window is closed
FIRST = "Hola, ¿abren el domingo?"
SECOND = "¿Tienen pan de masa madre hoy?"
BY_HAND = "Sí, hasta las 14:00. Le guardo dos hogazas."
TEMPLATE_BODY = "Hello {{1}}, your order is ready for pickup."
TICK_ORDER = ["pending", "sent", "delivered", "read"]


async def console_link_of(meta: Meta, db: asyncpg.Connection) -> str:
    """The link an invitation of the tenant would carry now (its current generation)."""
    from uuid import UUID

    from wa_cloud.tenants.links import make_console_link

    generation = await db.fetchval(
        "SELECT link_generation FROM tenants WHERE id = $1::uuid", meta.tenant_id
    )
    return make_console_link(meta.app.settings, UUID(meta.tenant_id), generation=generation)


async def ticks_until_read(bubble: Any, timeout: float = 10.0) -> list[str]:
    """The tick classes a bubble shows, as the page updates them, until it says read."""
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1] != "read":
            classes = (await bubble.locator(".ticks").get_attribute("class") or "").split()
            tick = next((c for c in classes if c in TICK_ORDER), "?")
            if not seen or seen[-1] != tick:
                seen.append(tick)
            await asyncio.sleep(0.02)
    return seen


# The sandbox's sent, delivered and read after 0.5, 1 and 1.5 s instead of 20 to 60 ms: slow
# enough for a person, and this test, to see each tick.
SLOW_STATUSES = (0.5, 1.0, 1.5)


async def test_the_business_reads_live_takes_over_and_offers_a_template(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    async with console(settings, models=True, status_delays=SLOW_STATUSES) as (meta, browser):
        base = meta.app.base_url
        await give_credits(db, meta)
        await configure_bot(meta, debounce_seconds=1.0)
        seeded = await meta.sandbox.post(
            "/_sandbox/templates",
            json={
                "waba_id": WABA,
                "name": "order_ready",
                "language": "en_US",
                "body": TEMPLATE_BODY,
            },
        )
        assert seeded.status_code == 201, seeded.text
        await meta.customer_writes("Buenas tardes", sender=LATE_CUSTOMER)
        await db.execute(
            "UPDATE contacts SET last_inbound_at = now() - interval '25 hours' WHERE wa_id = $1",
            LATE_CUSTOMER,
        )

        business = await browser.user(base)
        page = await continue_with_link(business, await console_link_of(meta, db))
        assert page.url == f"{base}/console/inbox"
        conversations = page.locator("#conversation-list li")
        assert await conversations.count() == 1
        await wait_live(page)

        # A customer writes (a signed webhook, through the sandbox): the list shows it live.
        marker = await mark_document(page)
        await meta.customer_writes(FIRST, sender=CUSTOMER)
        await conversations.filter(has_text=FIRST).wait_for()
        await assert_same_document(page, f"{base}/console/inbox", marker)
        assert await conversations.count() == 2
        # Newest first, with its unread count.
        first = conversations.first
        assert FIRST in await first.inner_text()
        assert await first.locator(".unread").text_content() == "1 unread"

        await first.get_by_role("link").click()
        contact_id = await db.fetchval("SELECT id FROM contacts WHERE wa_id = $1", CUSTOMER)
        thread_url = f"{base}/console/inbox/{NUMBER_A}/{contact_id}"
        await page.wait_for_url(thread_url)
        messages = page.locator("#messages")
        await wait_live(page)
        # The assistant's answer to the first message (the echo model repeats it).
        assistant = messages.locator(".bubble.out", has_text="Assistant")
        await assistant.filter(has_text=FIRST).wait_for()

        # The second message appears in the open thread without a reload, then the
        # assistant's reply (after its debounce), its ticks moving on to read.
        marker = await mark_document(page)
        # Meta stamps an inbound message to the whole second, and the thread orders by that
        # stamp: one second after the reply, the next message is sure to sort after it.
        await asyncio.sleep(1.0)
        await meta.customer_writes(SECOND, sender=CUSTOMER)
        await messages.locator(".bubble:not(.out)", has_text=SECOND).wait_for()
        reply = assistant.filter(has_text=SECOND)
        await reply.wait_for()
        seen = await ticks_until_read(reply)
        # Seen moving: at least one tick before read, never backwards.
        assert len(seen) >= 2 and seen == sorted(seen, key=TICK_ORDER.index), seen
        assert await reply.locator(".ticks .visually-hidden").inner_text() == "read"
        await assert_same_document(page, thread_url, marker)
        status = await db.fetchval(
            "SELECT status FROM messages WHERE direction = 'out' AND text = $1", SECOND
        )
        assert status == "read"

        # The owner pauses the assistant for this conversation and answers by hand.
        panel = page.locator("#contact-panel")
        assert await panel.locator(".bot-state").inner_text() == "Active."
        async with page.expect_navigation():
            await page.get_by_role("button", name="Pause the assistant").click()
        assert await panel.locator(".bot-state").inner_text() == (
            "Paused until resumed, by the console."
        )
        paused = await db.fetchrow(
            "SELECT bot_paused, paused_by FROM contacts WHERE id = $1", contact_id
        )
        assert (paused["bot_paused"], paused["paused_by"]) == (True, "console")
        await page.get_by_label("Message", exact=True).fill(BY_HAND)
        async with page.expect_navigation():
            await page.get_by_role("button", name="Send", exact=True).click()
        assert page.url == thread_url
        human = messages.locator(".bubble.out", has_text=BY_HAND)
        await human.wait_for()
        assert await human.locator(".author").inner_text() == "Human / API"
        sent = await sent_to_customer(meta, 3)
        assert sent[-1]["to"] == CUSTOMER and sent[-1]["text"] == {"body": BY_HAND}
        row = await db.fetchrow("SELECT author FROM messages WHERE text = $1", BY_HAND)
        assert row["author"] == "human"
        assert len(await ticks_until_read(human)) >= 2
        bubbles = await messages.locator(".bubble").evaluate_all(
            "(all) => all.map((b) => [b.classList.contains('out') ? 'out' : 'in',"
            " b.querySelector('.text').textContent])"
        )
        assert bubbles == [
            ["in", FIRST],
            ["out", FIRST],
            ["in", SECOND],
            ["out", SECOND],
            ["out", BY_HAND],
        ]
        await screenshot(page, tmp_path, "console-inbox", readme=True)

        # A customer whose window closed: the composer offers the approved template.
        late_id = await db.fetchval("SELECT id FROM contacts WHERE wa_id = $1", LATE_CUSTOMER)
        await page.goto(f"/console/inbox/{NUMBER_A}/{late_id}")
        assert "window closed" in await page.locator(".thread-window").inner_text()
        assert await page.get_by_label("Message", exact=True).count() == 0
        choice = page.locator("details.template-choice", has_text="order_ready")
        await choice.locator("summary").click()
        assert "your order is ready for pickup" in await choice.inner_text()
        await choice.get_by_role("textbox").fill("Marta")
        async with page.expect_navigation():
            await choice.get_by_role("button", name="Send “order_ready”").click()
        sent = await sent_to_customer(meta, 4)
        assert sent[-1]["to"] == LATE_CUSTOMER
        assert sent[-1]["template"]["name"] == "order_ready"
        assert sent[-1]["template"]["components"] == [
            {"type": "body", "parameters": [{"type": "text", "text": "Marta"}]}
        ]
        await messages.locator(".bubble.out", has_text="order_ready").wait_for()
        await screenshot(page, tmp_path, "console-inbox-template")


# -- 3. a web-session number's QR ----------------------------------------------------------------


async def test_a_web_session_numbers_qr_appears_and_changes_live(
    settings: Settings, tmp_path: Path
) -> None:
    from tests.test_websession import PHONE, control, instance_of, register, wait_state

    async with console(settings) as (meta, browser):
        base = meta.app.base_url
        business = await browser.user(base)
        page = await sign_in(business, meta.api_key)
        assert page.url == f"{base}/console/inbox"
        await register(meta)
        instance = (await instance_of(meta))["name"]
        shown = await wait_state(meta, "qr")
        number_url = f"{base}/console/my-numbers/{PHONE}"
        await page.goto(number_url)
        connection = page.locator("section[aria-labelledby=connection-heading]")
        qr = connection.get_by_role("img", name="QR code to link WhatsApp")
        assert await qr.get_attribute("src") == shown["qr_base64"]
        assert shown["qr_base64"].startswith("data:image/png;base64,")
        assert shown["pairing_code"] in await connection.inner_text()
        assert "Waiting for a scan" in await connection.inner_text()
        await wait_live(page)
        marker = await mark_document(page)

        # The gateway rotates the code: the new one replaces it in place.
        await control(meta, instance, "qr")
        await wait_src_change(page, ".qr img", shown["qr_base64"])
        rotated = await wait_state(meta, "qr")
        assert rotated["qr_base64"] != shown["qr_base64"]
        assert await qr.get_attribute("src") == rotated["qr_base64"]
        assert rotated["pairing_code"] in await connection.inner_text()
        await assert_same_document(page, number_url, marker)
        await screenshot(page, tmp_path, "console-number-qr")

        # Scanned: connected, the code gone; logged out from the phone: a new code appears.
        await control(meta, instance, "scan", phone=PHONE)
        await connection.locator(".badge.ok").wait_for()
        assert await qr.count() == 0
        await control(meta, instance, "drop", code=401)
        await qr.wait_for()
        again = await wait_state(meta, "qr")
        assert await qr.get_attribute("src") == again["qr_base64"]
        assert again["qr_base64"] not in (shown["qr_base64"], rotated["qr_base64"])
        await assert_same_document(page, number_url, marker)


# -- 4. forged forms and another tenant's conversation -----------------------------------------

FORGED = "Forged Ltd"
# A page of another site (another port on loopback: the same *site* for the browser, so the
# SameSite=Strict cookie goes along and only the Origin and CSRF checks stand in the way).
EVIL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Win a prize</title></head><body>
<form method="post" action="{app}/console/tenants">
  <input type="hidden" name="csrf" value="{csrf}">
  <input type="hidden" name="name" value="{name}">
  <button type="submit">Win a prize</button>
</form>
</body></html>"""


@contextlib.asynccontextmanager
async def evil_site(app_url: str, csrf: str) -> AsyncIterator[str]:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse(EVIL_PAGE.format(app=app_url, csrf=csrf, name=FORGED))

    async with serve_asgi(Starlette(routes=[Route("/", page)])) as url:
        yield url


async def test_forged_forms_are_refused_and_another_tenants_conversation_is_not_found(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with console(settings) as (meta, browser):
        base = meta.app.base_url
        await meta.customer_writes(FIRST, sender=CUSTOMER)
        contact_id = await db.fetchval("SELECT id FROM contacts WHERE wa_id = $1", CUSTOMER)
        message_id = await db.fetchval("SELECT id FROM messages WHERE text = $1", FIRST)
        thread = f"/console/inbox/{NUMBER_A}/{contact_id}"

        # The operator, signed in, visits another site whose form posts to the console, with
        # the session's real CSRF token even (as if it had leaked): the Origin gives it away.
        # Not watched: this context loads another site on purpose.
        operator = await browser.user(base, watched=False)
        page = await sign_in(operator, meta.app.settings.admin_token or "")
        csrf = await page.locator("body").get_attribute("data-csrf")
        assert csrf
        async with evil_site(base, csrf) as evil:
            await page.goto(evil)
            async with page.expect_navigation() as posted:
                await page.get_by_role("button", name="Win a prize").click()
            assert (await posted.value).status == 403
            assert "came from another site" in await page.locator("h1").inner_text()
            # A script of that site posting in the background is refused the same way.
            async with page.expect_response(f"{base}/console/tenants") as fetched:
                await page.goto(evil)
                await page.evaluate(
                    """([url, csrf, name]) => fetch(url, {
                        method: "POST", mode: "no-cors", credentials: "include",
                        body: new URLSearchParams({csrf, name}),
                    })""",
                    [f"{base}/console/tenants", csrf, FORGED],
                )
            assert (await fetched.value).status == 403
        # From the console's own page, without the token: refused as well.
        await page.goto("/console/tenants")
        await page.locator("form[action='/console/tenants'] input[name=csrf]").evaluate(
            "(field) => { field.value = 'guessed'; }"
        )
        await page.get_by_label("Name", exact=True).fill(FORGED)
        async with page.expect_navigation() as guessed:
            await page.get_by_role("button", name="Create tenant").click()
        assert (await guessed.value).status == 403
        assert await db.fetchval("SELECT count(*) FROM tenants WHERE name = $1", FORGED) == 0

        # Tenant B, signed in with its own key, tries tenant A's conversation: not found, like
        # a page that does not exist, and its forms change nothing there.
        other = await meta.app.create_tenant("Other Co")
        intruder = await browser.user(base)
        page = await intruder.new_page()
        first = await page.goto("/console/")
        assert first is not None and first.ok
        assert page.url.startswith(f"{base}/console/signin?next=")
        # A wrong key first: refused, no session, the field focused again for another try.
        await page.get_by_label("Admin token or API key").fill("wak_not-a-key")
        async with page.expect_navigation() as refused:
            await page.get_by_role("button", name="Sign in").click()
        assert (await refused.value).status == 401
        assert await page.get_by_role("alert").inner_text() == (
            "That is not a valid admin token or API key."
        )
        assert [c["name"] for c in await intruder.cookies()] == ["wa_console_signin"]
        assert await page.evaluate("document.activeElement.id") == "token"
        page = await sign_in(intruder, other["api_key"])
        assert page.url == f"{base}/console/inbox"
        for path in (
            thread,
            f"{thread}/messages",
            f"{thread}/panel",
            f"/console/inbox/{NUMBER_A}/list",
            f"/console/inbox?number={NUMBER_A}",
            f"/console/media/{message_id}",
            f"/console/my-numbers/{NUMBER_A}",
            f"/console/my-numbers/{NUMBER_A}/session",
        ):
            response = await page.goto(path)
            assert response is not None and response.status == 404, (path, response)
            assert FIRST not in await page.content()
        await page.goto("/console/inbox")
        for action in ("pause", "send"):
            browser.expect_refused(intruder, f"{base}{thread}/{action}")
            refused = await page.evaluate(
                """async ([url, csrf]) => (await fetch(url, {
                    method: "POST", body: new URLSearchParams({csrf, body: "hijacked"}),
                })).status""",
                [f"{thread}/{action}", await page.locator("body").get_attribute("data-csrf")],
            )
            assert refused == 404, action
        contact = await db.fetchrow("SELECT bot_paused FROM contacts WHERE id = $1", contact_id)
        assert contact["bot_paused"] is False
        assert await db.fetchval("SELECT count(*) FROM messages WHERE direction = 'out'") == 0


# -- 5. every main page --------------------------------------------------------------------------

# Fields without a label, images without alt, buttons without a name, tables without headers.
ACCESSIBILITY_GAPS = """() => {
  const named = (e) => e.labels?.length || e.getAttribute("aria-label")
    || e.getAttribute("aria-labelledby");
  const gaps = [];
  document.querySelectorAll("input:not([type=hidden]), select, textarea").forEach((e) => {
    if (!named(e)) gaps.push(`field ${e.name || e.id}`);
  });
  document.querySelectorAll("img").forEach((e) => {
    if (!e.hasAttribute("alt")) gaps.push(`img ${e.src.slice(0, 40)}`);
  });
  document.querySelectorAll("button").forEach((e) => {
    if (!e.textContent.trim() && !e.getAttribute("aria-label")) gaps.push("button");
  });
  document.querySelectorAll("table").forEach((e) => {
    if (!e.querySelector("th")) gaps.push("table without th");
  });
  return gaps;
}"""
PHONE_WIDTH = 390


async def check_page(page: Any, path: str, tmp_path: Path, name: str, *expected: str) -> str:
    """Open a main page: 200, its text holds `expected`, accessible basics, a screenshot."""
    response = await page.goto(path)
    assert response is not None and response.status == 200, (path, response and response.status)
    text = await main_text(page)
    for part in expected:
        assert part in text, (path, part, text[:2000])
    assert await page.evaluate(ACCESSIBILITY_GAPS) == [], path
    await screenshot(page, tmp_path, name)
    # The first Tab reaches the skip link: keyboard users start there.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    return text


async def wider_than_a_phone(page: Any, path: str) -> str | None:
    """What of the page sticks out of a phone's screen (a sideways scroll), if anything."""
    await page.goto(path)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return f"{path}: {overflow}px wider than {PHONE_WIDTH}px" if overflow > 0 else None


async def test_every_main_page_is_clean_accessible_and_shows_what_matters(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    async with console(settings, models=True) as (meta, browser):
        base, tenant_id = meta.app.base_url, meta.tenant_id
        await give_credits(db, meta, 120)
        await configure_bot(meta, instructions="You answer for {{business_name}}.")
        await meta.customer_writes(FIRST, sender=CUSTOMER)
        await sent_to_customer(meta, 1)  # the echo model's answer
        contact_id = await db.fetchval("SELECT id FROM contacts WHERE wa_id = $1", CUSTOMER)

        operator = await browser.user(base)
        page = await sign_in(operator, meta.app.settings.admin_token or "")
        await check_page(page, "/console/tenants", tmp_path, "operator-tenants", "Sender Co")
        await check_page(
            page, f"/console/tenants/{tenant_id}", tmp_path, "operator-tenant", NUMBER_A, "118"
        )
        await check_page(page, "/console/numbers", tmp_path, "operator-numbers", "Sender Co")
        await check_page(
            page, "/console/events", tmp_path, "operator-events", "tenant.created", "bot.configured"
        )
        await check_page(page, "/console/usage", tmp_path, "operator-usage", "echo")
        await check_page(page, "/console/ai", tmp_path, "operator-ai", "echo")

        business = await browser.user(base)
        page = await sign_in(business, meta.api_key)
        await check_page(page, "/console/inbox", tmp_path, "business-inbox", FIRST)
        thread = f"/console/inbox/{NUMBER_A}/{contact_id}"
        await check_page(page, thread, tmp_path, "business-thread", FIRST, "Assistant")
        await check_page(
            page,
            "/console/my-numbers",
            tmp_path,
            "business-numbers",
            "Sandbox Business",
            "Connected",
        )
        await check_page(
            page,
            f"/console/my-numbers/{NUMBER_A}",
            tmp_path,
            "business-number",
            "You answer for Sandbox Business.",
        )
        await check_page(
            page, "/console/my-usage", tmp_path, "business-usage", "118 credits left", "echo"
        )
        assert await page.locator("main svg").count() >= 1  # the chart, drawn on the server

        # The watch itself works: an inline script added on purpose is refused and seen.
        watch = browser.watches[business]
        assert watch.violations == []
        await page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.__ran = true'; document.body.append(s); }"
        )
        async with asyncio.timeout(5):
            while not watch.violations:
                await asyncio.sleep(0.02)
        assert watch.violations[0].startswith("script-src-elem inline"), watch.violations
        assert await page.evaluate("window.__ran === undefined")
        watch.violations.clear()
        watch.errors = [e for e in watch.errors if "Content Security Policy" not in e]

        # On a phone: nothing wider than the screen (no sideways scrolling).
        phone = await browser.user(base, width=PHONE_WIDTH)
        page = await sign_in(phone, meta.api_key)
        paths = ["/console/inbox", "/console/my-numbers", f"/console/my-numbers/{NUMBER_A}"]
        paths += ["/console/my-usage", thread]
        wider = [await wider_than_a_phone(page, path) for path in paths]
        await screenshot(page, tmp_path, "business-thread-phone")
        phone = await browser.user(base, width=PHONE_WIDTH)
        page = await sign_in(phone, meta.app.settings.admin_token or "")
        paths = ["/console/tenants", f"/console/tenants/{tenant_id}", "/console/numbers"]
        paths += ["/console/events", "/console/usage", "/console/ai"]
        wider += [await wider_than_a_phone(page, path) for path in paths]
        assert [w for w in wider if w] == []
