"""Signed links, the invitation mail and the tenant status page (GET /t/{token}).

The mail goes through a fake SMTP server on loopback that speaks the real protocol (EHLO,
AUTH PLAIN/LOGIN, MAIL, RCPT, DATA), so smtplib is exercised exactly as against a real one.
The page is checked over HTTP and rendered by headless Chromium when it is installed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import logging
import re
import shutil
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import Running, bound_socket, serve
from wa_cloud.config import Settings
from wa_cloud.logs import ConsoleFormatter, JsonFormatter
from wa_cloud.secretbox import SecretBox
from wa_cloud.tenants import links
from wa_cloud.tenants.mail import parse_smtp_url

CHROMIUM = "/usr/bin/chromium"
ACCESS_TOKEN = "EAAG-status-page-secret-token"
SMTP_USER = "mailer@example.test"
SMTP_PASSWORD = "s3cret:p@ss/word"  # ':', '@' and '/' must survive percent-encoding
NUMBER_ON = "106540352242931"
NUMBER_OFF = "106540352242932"
DISPLAY_ON = "15550783881"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/t/[A-Za-z0-9_.\-]+")


# -- links ------------------------------------------------------------------------------------


def _tenant_in(settings: Settings, token: str, *args: Any) -> uuid.UUID | None:
    link = links.open_link(settings, token, *args)
    return None if link is None else link.tenant_id


def _settings(secret: str = "master-key-for-links") -> Settings:
    return Settings(secret_key=secret, public_url="https://wa.example.test/")


def test_link_round_trip() -> None:
    settings, tenant_id = _settings(), uuid.uuid4()
    link = links.make_link(settings, tenant_id)
    assert link.startswith("https://wa.example.test/t/")
    token = link.rsplit("/", 1)[1]
    assert _tenant_in(settings, token) == tenant_id
    # The token carries the id signed, not hidden: what matters is that nobody can forge one.
    assert _tenant_in(_settings("another-master-key"), token) is None


def test_link_expires_after_its_lifetime() -> None:
    settings, tenant_id = _settings(), uuid.uuid4()
    issued = time.time() - 3600
    token = links.make_token(settings, tenant_id, clock=lambda: issued)
    # The clock is injected: no sleeping to see a link age.
    assert _tenant_in(settings, token, timedelta(hours=2)) == tenant_id
    assert _tenant_in(settings, token, timedelta(minutes=59)) is None
    eight_days_old = links.make_token(settings, tenant_id, clock=lambda: time.time() - 8 * 86400)
    assert _tenant_in(settings, eight_days_old) is None
    six_days_old = links.make_token(settings, tenant_id, clock=lambda: time.time() - 6 * 86400)
    assert _tenant_in(settings, six_days_old) == tenant_id
    # A link from the future (a clock skewed forward) is refused too.
    future = links.make_token(settings, tenant_id, clock=lambda: time.time() + 3600)
    assert _tenant_in(settings, future) is None
    assert links.expires_at(issued) == datetime.fromtimestamp(int(issued), UTC) + timedelta(days=7)


def test_links_survive_a_key_rotation_while_the_old_key_is_listed() -> None:
    old, tenant_id = _settings("old-master-key"), uuid.uuid4()
    token = links.make_token(old, tenant_id)
    rotated = replace(old, secret_key="new-master-key", previous_secret_keys=("old-master-key",))
    assert _tenant_in(rotated, token) == tenant_id
    # New links are signed with the new key only.
    fresh = links.make_token(rotated, tenant_id)
    assert _tenant_in(_settings("new-master-key"), fresh) == tenant_id
    assert _tenant_in(old, fresh) is None
    # Once the old key is dropped, its links stop opening.
    assert _tenant_in(_settings("new-master-key"), token) is None


def _flip(text: str, index: int) -> str:
    swapped = "A" if text[index] != "A" else "B"
    return text[:index] + swapped + text[index + 1 :]


def test_tampered_links_are_refused() -> None:
    settings, tenant_id = _settings(), uuid.uuid4()
    token = links.make_token(settings, tenant_id)
    payload, stamp, signature = token.split(".")
    other = links.make_token(settings, uuid.uuid4())
    candidates = [
        _flip(token, len(token) - 10),  # signature (not its last char: padding bits)
        _flip(token, 3),  # payload
        ".".join((other.split(".")[0], stamp, signature)),  # another tenant's payload
        ".".join((payload, _flip(stamp, 0), signature)),  # an older or newer timestamp
        payload,
        "",
        "not-a-token",
        "x" * 5000,
    ]
    for candidate in candidates:
        assert _tenant_in(settings, candidate) is None, candidate
    # Signed with the same master key for another purpose (salt): still not a status link.
    from itsdangerous import URLSafeTimedSerializer

    foreign = URLSafeTimedSerializer(settings.secret_key or "", salt="another-purpose")
    assert _tenant_in(settings, str(foreign.dumps(str(tenant_id)))) is None
    # Correctly signed but not a tenant id: never ours, refused without an error.
    not_uuid = links.signed_serializer(settings, time.time).dumps({"tenant": "x"})
    assert _tenant_in(settings, str(not_uuid)) is None


def test_smtp_url_parsing_never_echoes_the_url() -> None:
    server = parse_smtp_url("smtp://mailer%40example.test:s3cret%3Ap%40ss%2Fword@mx.test")
    assert (server.host, server.port, server.implicit_tls) == ("mx.test", 587, False)
    assert (server.username, server.password) == (SMTP_USER, SMTP_PASSWORD)
    assert SMTP_PASSWORD not in repr(server)
    assert parse_smtp_url("smtps://mx.test").port == 465
    assert parse_smtp_url("smtps://u:p@mx.test:2465").port == 2465
    for bad in ("http://user:hunter2@mx.test", "smtp://user:hunter2@mx.test:port", "smtp://"):
        with pytest.raises(ValueError) as raised:
            parse_smtp_url(bad)
        assert "hunter2" not in str(raised.value)


# -- a fake SMTP server -----------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes
    user: str | None

    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


@dataclass
class FakeSmtp:
    """Enough of RFC 5321 and RFC 4954 for smtplib: one mail per DATA, kept in `received`."""

    user: str
    password: str
    mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    refuse: frozenset[str] = frozenset()
    received: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(*lines: str) -> None:
            writer.write("".join(line + "\r\n" for line in lines).encode())
            await writer.drain()

        async def read() -> str | None:
            raw = await reader.readline()
            return raw.decode().rstrip("\r\n") if raw else None

        user: str | None = None
        mail_from: str | None = None
        recipients: list[str] = []
        try:
            await reply("220 fake.test ESMTP ready")
            while (line := await read()) is not None:
                verb, _, argument = line.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    await reply(
                        "250-fake.test greets you",
                        f"250-AUTH {' '.join(self.mechanisms)}",
                        "250 8BITMIME",
                    )
                elif verb == "HELO":
                    await reply("250 fake.test")
                elif verb == "AUTH":
                    user = await self._auth(argument, reply, read)
                    if user is None:
                        await reply("535 5.7.8 Authentication credentials invalid")
                    else:
                        self.logins.append(argument.split(" ")[0].upper())
                        await reply("235 2.7.0 Authentication successful")
                elif verb == "MAIL":
                    if user is None:
                        await reply("530 5.7.0 Authentication required")
                        continue
                    mail_from, recipients = _address(argument), []
                    await reply("250 2.1.0 Ok")
                elif verb == "RCPT":
                    address = _address(argument)
                    if mail_from is None:
                        await reply("503 5.5.1 MAIL first")
                    elif address in self.refuse:
                        await reply("550 5.1.1 No such user here")
                    else:
                        recipients.append(address)
                        await reply("250 2.1.5 Ok")
                elif verb == "DATA":
                    if mail_from is None or not recipients:
                        await reply("503 5.5.1 RCPT first")
                        continue
                    await reply("354 End data with <CR><LF>.<CR><LF>")
                    data = await _read_data(reader)
                    self.received.append(Received(mail_from, recipients, data, user))
                    mail_from, recipients = None, []
                    await reply("250 2.0.0 Ok: queued")
                elif verb in ("RSET", "NOOP"):
                    mail_from, recipients = (
                        (None, []) if verb == "RSET" else (mail_from, recipients)
                    )
                    await reply("250 2.0.0 Ok")
                elif verb == "QUIT":
                    await reply("221 2.0.0 Bye")
                    break
                else:
                    await reply("502 5.5.2 Command not recognized")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _auth(self, argument: str, reply: Any, read: Any) -> str | None:
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in self.mechanisms:
            return None
        if mechanism == "PLAIN":
            if not initial:
                await reply("334 ")
                initial = await read() or ""
            _, user, password = base64.b64decode(initial).decode().split("\0")
        else:  # LOGIN: user and password in turn, the user possibly as the initial response
            if not initial:
                await reply("334 " + base64.b64encode(b"Username:").decode())
                initial = await read() or ""
            user = base64.b64decode(initial).decode()
            await reply("334 " + base64.b64encode(b"Password:").decode())
            password = base64.b64decode(await read() or "").decode()
        return user if (user, password) == (self.user, self.password) else None


def _address(argument: str) -> str:
    found = re.search(r"<([^>]*)>", argument)
    return found.group(1) if found else ""


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines: list[bytes] = []
    while (line := await reader.readline()) not in (b".\r\n", b""):
        lines.append(line[1:] if line.startswith(b"..") else line)  # undo dot-stuffing
    return b"".join(lines)


@contextlib.asynccontextmanager
async def smtp_server(fake: FakeSmtp) -> AsyncIterator[int]:
    server = await asyncio.start_server(fake.session, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


# -- the app with a public URL it knows -------------------------------------------------------


@contextlib.asynccontextmanager
async def running(settings: Settings, **changes: Any) -> AsyncIterator[Running]:
    """The web process, with WA_PUBLIC_URL set to where it really listens (links open)."""
    sock = bound_socket()
    public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with serve(
        replace(settings, public_url=public_url, **changes), run_worker=False, sock=sock
    ) as app:
        yield app


@dataclass
class Seeded:
    tenant_id: str
    api_key: str


async def seed(
    app: Running, db: asyncpg.Connection, name: str = "Café <b>Ñandú</b> & Co"
) -> Seeded:
    """A tenant with two numbers, today's traffic and contacts in every window state."""
    created = await app.client.post(
        "/v1/admin/tenants", json={"name": name, "email": "owner@tenant.test"}, headers=app.admin()
    )
    assert created.status_code == 201, created.text
    tenant_id = uuid.UUID(created.json()["id"])
    box = SecretBox(app.settings.secret_key or "")
    # Inserted directly: the page reads rows, and this keeps the test off the Graph API.
    await db.execute(
        """INSERT INTO numbers (phone_number_id, tenant_id, waba_id, display_phone_number,
                                verified_name, quality_rating, bot_enabled, throughput_mps,
                                access_token_enc)
           VALUES ($1, $2, '102290129340398', $3, 'Cafe Nandu', 'GREEN', true, 80, $4),
                  ($5, $2, '102290129340398', NULL, NULL, NULL, false, 20, NULL)""",
        NUMBER_ON,
        tenant_id,
        DISPLAY_ON,
        box.seal(ACCESS_TOKEN, context=f"numbers.access_token:{NUMBER_ON}"),
        NUMBER_OFF,
    )
    now = datetime.now(UTC)
    contacts = [
        ("16505550001", now - timedelta(hours=1), None),  # open
        ("16505550002", now - timedelta(hours=23), now - timedelta(hours=30)),  # reopened: open
        ("16505550003", now - timedelta(hours=25), None),  # expired
        ("16505550004", now - timedelta(hours=2), now - timedelta(hours=1)),  # closed by a 131047
    ]
    ids = {}
    for wa_id, last_inbound, closed in contacts:
        ids[wa_id] = await db.fetchval(
            """INSERT INTO contacts (tenant_id, phone_number_id, wa_id, last_inbound_at,
                                     window_closed_at)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""",
            tenant_id,
            NUMBER_ON,
            wa_id,
            last_inbound,
            closed,
        )
    traffic = [("in", now), ("in", now), ("in", now), ("out", now), ("out", now)]
    traffic += [("in", now - timedelta(hours=25)), ("out", now - timedelta(hours=25))]  # yesterday
    for direction, at in traffic:
        await db.execute(
            """INSERT INTO messages (tenant_id, phone_number_id, contact_id, direction, type,
                                     payload, status, created_at)
               VALUES ($1, $2, $3, $4, 'text', '{}', 'delivered', $5)""",
            tenant_id,
            NUMBER_ON,
            ids["16505550001"],
            direction,
            at,
        )
    return Seeded(str(tenant_id), created.json()["api_key"])


def sections(html: str) -> list[str]:
    return html.split('<section class="card">')[1:]


def row(label: str, value: object) -> str:
    return f"<dt>{label}</dt><dd>{value}</dd>"


def assert_no_secrets(text: str, app: Running, seeded: Seeded, token: str) -> None:
    shown = {
        "access token": ACCESS_TOKEN,
        "api key": seeded.api_key,
        "tenant id": seeded.tenant_id,
        "tenant id (hex)": uuid.UUID(seeded.tenant_id).hex,
        "link token": token,
        "admin token": app.settings.admin_token or "",
        "master key": app.settings.secret_key or "",
        "waba id": "102290129340398",
    }
    for label, value in shown.items():
        assert value and value not in text, f"the page shows the {label}"


# -- the page over HTTP -----------------------------------------------------------------------


async def test_status_page_shows_each_number_and_no_secret(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with running(settings) as app:
        seeded = await seed(app, db)
        link = links.make_link(app.settings, uuid.UUID(seeded.tenant_id))
        assert link.startswith(app.base_url + "/t/")
        response = await app.client.get(link)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    html = response.text
    assert '<meta name="viewport"' in html
    assert "http://" not in html.replace(app.base_url, "") and "https://" not in html
    # The tenant's name is text, escaped, never markup.
    assert "Café &lt;b&gt;Ñandú&lt;/b&gt; &amp; Co" in html and "<b>Ñandú" not in html

    on, off = sections(html)
    assert DISPLAY_ON in on and "Cafe Nandu" in on
    assert "Connected" in on and "Bot on" in on and "Cloud API" in on
    assert row("Quality rating", "GREEN").replace("<dd>", '<dd class="ok">') in on
    assert row("Messaging limit", "—") in on
    assert row("Throughput", "80 msg/s") in on
    assert row("Messages in today", 3) in on and row("Messages out today", 2) in on
    assert row("Open conversation windows", 2) in on
    # No display number yet: the phone_number_id names it; no token: not connected.
    assert NUMBER_OFF in off and "Not connected" in off and "Bot off" in off
    assert row("Throughput", "20 msg/s") in off
    assert row("Messages in today", 0) in off and row("Open conversation windows", 0) in off
    assert_no_secrets(html, app, seeded, link.rsplit("/", 1)[1])


async def test_bad_links_get_a_friendly_404_page(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with running(settings) as app:
        seeded = await seed(app, db, name="Gone Co")
        tenant_id = uuid.UUID(seeded.tenant_id)
        token = links.make_token(app.settings, tenant_id)
        expired = links.make_token(app.settings, tenant_id, clock=lambda: time.time() - 8 * 86400)
        forged = links.make_token(replace(app.settings, secret_key="guessed"), tenant_id)
        for bad in (expired, forged, _flip(token, len(token) - 10), "nonsense"):
            response = await app.client.get(f"/t/{bad}")
            assert response.status_code == 404, bad
            assert response.headers["content-type"].startswith("text/html")
            assert "expired or is not valid" in response.text
            assert "Gone Co" not in response.text and seeded.tenant_id not in response.text
        assert (await app.client.get(f"/t/{token}")).status_code == 200
        assert (await app.client.head(f"/t/{token}")).status_code == 200
        # A valid link to a tenant that has since been deleted: the same page, nothing more.
        await db.execute("DELETE FROM tenants WHERE id = $1", tenant_id)
        gone = await app.client.get(f"/t/{token}")
        assert gone.status_code == 404 and "expired or is not valid" in gone.text


# -- invitations ------------------------------------------------------------------------------


def rendered_logs(records: Iterable[logging.LogRecord]) -> str:
    json_format, console = JsonFormatter(), ConsoleFormatter()
    return "\n".join(f"{json_format.format(r)}\n{console.format(r)}" for r in records)


async def test_invite_without_smtp_logs_the_mail_in_dev(
    settings: Settings, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wa_cloud")
    # Only in dev: production never logs the link (tests/test_lifecycle.py).
    async with running(settings, dev=True) as app:
        seeded = await seed(app, db)
        path = f"/v1/admin/tenants/{seeded.tenant_id}/invite"
        before = datetime.now(UTC)
        response = await app.client.post(path, headers=app.admin())
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["sent_to"] == "owner@tenant.test"
        expires = datetime.fromisoformat(body["expires_at"])
        assert timedelta(days=7) - timedelta(seconds=2) <= expires - before <= timedelta(days=7)

        logged = [r for r in caplog.records if r.name == "wa_cloud.tenants.mail"]
        assert len(logged) == 1 and logged[0].levelno == logging.INFO
        record: Any = logged[0]
        assert record.to == "owner@tenant.test"
        assert record.subject.endswith("your WhatsApp status page")
        assert LINK.fullmatch(record.link) and record.link.startswith(app.base_url)
        page = await app.client.get(record.link)
        assert page.status_code == 200 and DISPLAY_ON in page.text

        audit = await db.fetch(
            "SELECT action, actor, severity, detail FROM audit_log"
            " WHERE tenant_id = $1 AND action LIKE 'tenant.invite%'",
            uuid.UUID(seeded.tenant_id),
        )
        assert [(a["action"], a["actor"], a["severity"]) for a in audit] == [
            ("tenant.invited", "admin", "info")
        ]
        assert record.link.rsplit("/", 1)[1] not in str(audit[0]["detail"])

        # The body's address wins over the stored one.
        other = await app.client.post(path, json={"email": "ops@tenant.test"}, headers=app.admin())
        assert other.status_code == 202 and other.json()["sent_to"] == "ops@tenant.test"

        # Refusals: no address anywhere, a bad one, unknown fields, unknown tenant, no admin.
        bare = await app.client.post(
            "/v1/admin/tenants", json={"name": "No Mail Co"}, headers=app.admin()
        )
        no_mail = f"/v1/admin/tenants/{bare.json()['id']}/invite"
        missing = await app.client.post(no_mail, headers=app.admin())
        assert missing.status_code == 422 and missing.json()["error"]["code"] == "missing_email"
        for bad in ("not-an-email", "a@b.test\r\nBcc: evil@x.test", "a@b.test, c@d.test"):
            invalid = await app.client.post(no_mail, json={"email": bad}, headers=app.admin())
            assert invalid.status_code == 422, bad
        unknown = await app.client.post(no_mail, json={"emails": "x@y.test"}, headers=app.admin())
        assert unknown.status_code == 422
        nobody = await app.client.post(
            f"/v1/admin/tenants/{uuid.uuid4()}/invite", headers=app.admin()
        )
        assert nobody.status_code == 404
        assert (await app.client.post(path)).status_code == 401
        tenant_key = {"authorization": f"Bearer {seeded.api_key}"}
        assert (await app.client.post(path, headers=tenant_key)).status_code == 401


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_invite_over_smtp_delivers_a_link_that_opens_the_page(
    settings: Settings, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture, mechanism: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="wa_cloud")
    fake = FakeSmtp(SMTP_USER, SMTP_PASSWORD, mechanisms=(mechanism,))
    async with smtp_server(fake) as port:
        # The fake speaks no TLS: plain text only because the URL says so.
        smtp_url = f"smtp+insecure://mailer%40example.test:s3cret%3Ap%40ss%2Fword@127.0.0.1:{port}"
        async with running(settings, smtp_url=smtp_url, mail_from="WA Cloud <wa@ops.test>") as app:
            seeded = await seed(app, db)
            response = await app.client.post(
                f"/v1/admin/tenants/{seeded.tenant_id}/invite", headers=app.admin()
            )
            assert response.status_code == 202, response.text
            assert fake.logins == [mechanism]
            [mail] = fake.received
            assert (mail.user, mail.mail_from, mail.recipients) == (
                SMTP_USER,
                "wa@ops.test",
                ["owner@tenant.test"],
            )
            message = mail.message()
            assert message["To"] == "owner@tenant.test"
            assert message["Subject"] == "Café <b>Ñandú</b> & Co: your WhatsApp status page"
            text = message.get_body(("plain",))
            html = message.get_body(("html",))
            assert text is not None and html is not None
            [link] = set(LINK.findall(text.get_content()))
            assert f'href="{link}"' in html.get_content()
            assert "&lt;b&gt;Ñandú" in html.get_content()  # the HTML part escapes the name too
            page = await app.client.get(link)
            assert page.status_code == 200
            assert DISPLAY_ON in page.text and "Bot on" in page.text
    logs = rendered_logs(caplog.records)
    assert SMTP_PASSWORD not in logs and "s3cret" not in logs and smtp_url not in logs


async def test_invite_when_the_mail_server_fails(
    settings: Settings, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wa_cloud")
    closed = bound_socket()  # bound, never listening: connection refused
    closed_url = f"smtp://u:hunter2-pw@127.0.0.1:{closed.getsockname()[1]}"
    fake = FakeSmtp("u", "right-pw", refuse=frozenset({"owner@tenant.test"}))
    async with smtp_server(fake) as port:
        async with running(settings, smtp_url=closed_url) as app:
            seeded = await seed(app, db)
            path = f"/v1/admin/tenants/{seeded.tenant_id}/invite"
            down = await app.client.post(path, headers=app.admin())
            assert down.status_code == 503 and down.json()["error"]["code"] == "mail_unavailable"
        refusing = f"smtp+insecure://u:right-pw@127.0.0.1:{port}"
        wrong_password = f"smtp+insecure://u:hunter2-pw@127.0.0.1:{port}"
        async with running(settings, smtp_url=refusing) as app:
            refused = await app.client.post(path, headers=app.admin())
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "email_refused"
        async with running(settings, smtp_url=wrong_password) as app:
            denied = await app.client.post(path, headers=app.admin())
            assert denied.status_code == 503
        async with running(settings, smtp_url="smtp://u:hunter2-pw@127.0.0.1:port") as app:
            misconfigured = await app.client.post(path, headers=app.admin())
            assert misconfigured.status_code == 503
    closed.close()
    assert fake.received == []
    failures = await db.fetch(
        "SELECT severity FROM audit_log WHERE action = 'tenant.invite_failed'"
    )
    assert [f["severity"] for f in failures] == ["warning"] * 4
    logs = rendered_logs(caplog.records)
    assert "hunter2" not in logs and "right-pw" not in logs


# -- headless Chromium ------------------------------------------------------------------------


async def chromium(*args: str, timeout: float = 60.0) -> bytes:
    """Run Chromium without blocking the event loop that serves the page it loads."""
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def _shot(tmp_path: Path, name: str, path: Path, link: str) -> None:
    await chromium(
        f"--user-data-dir={tmp_path / ('profile-' + name)}",
        "--window-size=412,900",
        f"--screenshot={path}",
        link,
    )


async def test_status_page_renders_in_headless_chromium(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip("chromium is not installed")
    async with running(settings) as app:
        seeded = await seed(app, db)
        link = links.make_link(app.settings, uuid.UUID(seeded.tenant_id))
        screenshot = tmp_path / "page.png"
        # One rendering for the picture, one for the text: a screenshot proves the page
        # rendered at a phone's width, but reading the number off its pixels would need OCR,
        # so what it says is checked in the DOM Chromium built from the same page.
        _, dom = await asyncio.gather(
            chromium(
                f"--user-data-dir={tmp_path / 'profile-shot'}",
                "--window-size=412,900",
                f"--screenshot={screenshot}",
                link,
            ),
            chromium(
                f"--user-data-dir={tmp_path / 'profile-dom'}",
                "--window-size=412,900",
                "--dump-dom",
                link,
            ),
        )
        # The pixels: the same page renders to the same picture, and a picture that changes
        # when only the number's display digits (or only the bot switch) change shows them.
        again, changed, switched = (tmp_path / f"{n}.png" for n in ("again", "number", "bot"))
        await _shot(tmp_path, "again", again, link)
        await db.execute(
            "UPDATE numbers SET display_phone_number = '15550000000' WHERE display_phone_number"
            " = $1",
            DISPLAY_ON,
        )
        await _shot(tmp_path, "number", changed, link)
        await db.execute("UPDATE numbers SET bot_enabled = NOT bot_enabled")
        await _shot(tmp_path, "bot", switched, link)
    assert screenshot.exists() and png_size(screenshot) == (412, 900)
    assert again.read_bytes() == screenshot.read_bytes(), "rendering is not repeatable"
    assert changed.read_bytes() != screenshot.read_bytes(), "the number is not in the picture"
    assert switched.read_bytes() != changed.read_bytes(), "the bot state is not in the picture"
    text = dom.decode()
    on, off = sections(text)
    assert DISPLAY_ON in on and "Bot on" in on and "Connected" in on
    assert NUMBER_OFF in off and "Bot off" in off and "Not connected" in off
    assert_no_secrets(text, app, seeded, link.rsplit("/", 1)[1])
