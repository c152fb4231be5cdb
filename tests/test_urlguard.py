"""The URL guard: every refused address family, the one lookup whose answer is connected to,
redirects checked again, TLS still checked against the hostname, no cookies kept, and the
guard in front of media by URL, `PUT /v1/webhooks` and the forwarder.

The servers here are plain asyncio servers on loopback that record every request head they
get, so "nothing reached it" is seen from the receiving side.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import NUMBER_A, meta_running, serve
from wa_cloud.backoff import Backoff
from wa_cloud.config import Settings
from wa_cloud.forwarding.events import enqueue_forward
from wa_cloud.forwarding.forwarder import Forwarder
from wa_cloud.media.fetch import fetch_url
from wa_cloud.metrics import Metrics
from wa_cloud.secretbox import SecretBox
from wa_cloud.urlguard import (
    IPAddress,
    UrlGuard,
    UrlNotAllowed,
    address_refusal,
    checked_url,
)
from wa_cloud.worker import run_consumer

ip = ipaddress.ip_address


# --- a recording server ---------------------------------------------------------------------


@dataclass
class Server:
    """Answers every request with `answer(path)` and keeps each request head it received."""

    host: str = "127.0.0.1"
    answer: Callable[[str], bytes] = lambda path: _response(200, b"ok")
    tls: ssl.SSLContext | None = None
    heads: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def base(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            self.heads.append(head)
            path = head.split(" ", 2)[1]
            writer.write(self.answer(path))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # a client that hung up (or refused our certificate) gets nothing
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Server]:
        server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}", "connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _redirect(location: str) -> Callable[[str], bytes]:
    return lambda path: _response(302, b"", {"location": location})


def strict() -> UrlGuard:
    return UrlGuard(allow_private=False)


def _only_this_loopback_is_public(allowed: str) -> Callable[[IPAddress], str | None]:
    """The real rule, except that one loopback address passes as if it were public: the only
    way to have an 'allowed' server to start from on a machine with no public address."""

    def rule(address: IPAddress) -> str | None:
        return None if address == ip(allowed) else address_refusal(address)

    return rule


# --- the address rule -------------------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # the cloud metadata service
    ("100.64.0.1", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.0.9", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    ("fec0::1", "private"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback address (IPv4-mapped)"),
    ("::ffff:10.0.0.1", "private address (IPv4-mapped)"),
    ("::ffff:169.254.169.254", "link-local address (IPv4-mapped)"),
    ("64:ff9b::a00:1", "private address (NAT64)"),
    ("64:ff9b::7f00:1", "loopback address (NAT64)"),
    ("64:ff9b:1::a00:1", "local NAT64"),
    ("64:ff9b:1::808:808", "local NAT64"),
    ("2002:7f00:1::1", "loopback address (6to4)"),
    ("2002:a9fe:a9fe::1", "link-local address (6to4)"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:db8::1", "documentation"),
    ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
    ("::ffff:0:7f00:1", "reserved"),  # SIIT
    ("100::1", "reserved"),
    ("4000::1", "reserved"),  # outside 2000::/3: no unicast there
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_every_non_public_address_is_refused(address: str, kind: str) -> None:
    reason = address_refusal(ip(address))
    assert reason is not None and kind in reason, (address, reason)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ip(address)) is None


HOSTS_OF_LOOPBACK_AND_FRIENDS = [
    "http://localhost/",  # a name, resolved by the system
    "http://LocalHost:8000/",
    "http://127.1/",  # the short forms inet_aton reads
    "http://0x7f000001/",
    "http://2130706433/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::1]:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[64:ff9b::a00:1]/",
    "http://0.0.0.0/",
    "https://10.0.0.1/",
]


@pytest.mark.parametrize("url", HOSTS_OF_LOOPBACK_AND_FRIENDS)
async def test_urls_that_resolve_to_a_private_address_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed) as refused:
        await strict().check(url)
    assert refused.value.status == 422 and refused.value.code == "url_not_allowed"
    assert "its host resolves to a" in refused.value.message
    # Private addresses allowed (dev, loopback fakes): only the address check is lifted.
    await UrlGuard(allow_private=True).check(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///path-only", "no host"),
        ("https://user:secret@8.8.8.8/", "user name or password"),
        ("https://token@8.8.8.8/", "user name or password"),
        ("http://[::1/", "not a valid URL"),
    ],
)
async def test_url_rules_hold_with_private_addresses_allowed(url: str, reason: str) -> None:
    with pytest.raises(UrlNotAllowed) as refused:
        await UrlGuard(allow_private=True).check(url)
    assert reason in refused.value.message
    assert "secret" not in refused.value.message


async def test_one_private_answer_among_public_ones_refuses_the_host() -> None:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ip("8.8.8.8"), ip("10.0.0.7"), ip("2606:4700::1111")]

    with pytest.raises(UrlNotAllowed) as refused:
        await UrlGuard(allow_private=False, resolve=resolve).check("https://mixed.test/")
    assert refused.value.reason == "its host resolves to a private address"
    assert "10.0.0.7" not in refused.value.message  # the reason, not our network's map


async def test_a_host_that_does_not_resolve_is_refused_when_set() -> None:
    with pytest.raises(UrlNotAllowed, match="does not resolve"):
        await strict().check("https://nothing-here.invalid/hook")
    assert checked_url("https://nothing-here.invalid/hook").host == "nothing-here.invalid"


# --- connections ------------------------------------------------------------------------------


async def test_the_client_refuses_before_connecting() -> None:
    async with Server().running() as server, strict().client(timeout=5) as http:
        for url in (server.base, f"http://localhost:{server.port}", f"http://127.1:{server.port}"):
            with pytest.raises(UrlNotAllowed, match="loopback"):
                await http.get(url + "/secret")
    assert server.heads == []


async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    """The name is resolved once and the socket opened to that answer: a name no DNS knows
    (so any second lookup would fail) reaches the server, and the resolver ran once per
    connection. A rebinding name gains nothing: what was checked is what is connected to."""
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ip("127.0.0.1")]

    guard = UrlGuard(
        allow_private=False,
        resolve=resolve,
        refusal=_only_this_loopback_is_public("127.0.0.1"),
    )
    async with Server().running() as server, guard.client(timeout=5) as http:
        response = await http.get(f"http://rebinding.invalid:{server.port}/x")
    assert response.status_code == 200
    assert lookups == ["rebinding.invalid"]
    assert f"host: rebinding.invalid:{server.port}" in server.heads[0].lower()


async def test_a_redirect_to_a_private_address_is_not_followed() -> None:
    # 127.0.0.2 is loopback as well (all of 127/8 is), here standing for a private address.
    guard = UrlGuard(allow_private=False, refusal=_only_this_loopback_is_public("127.0.0.1"))
    async with Server(host="127.0.0.2").running() as private, guard.client(timeout=5) as http:
        to_private = Server(answer=_redirect(private.base + "/internal"))
        async with to_private.running():
            with pytest.raises(UrlNotAllowed, match="loopback"):
                await fetch_url(http, to_private.base + "/file.jpg", max_bytes=1000)
            # Forwarding does not follow redirects at all (the client default).
            assert (await http.get(to_private.base + "/hook")).status_code == 302
    assert len(to_private.heads) == 2
    assert private.heads == []


async def test_a_redirect_to_another_scheme_or_credentials_is_refused() -> None:
    guard = UrlGuard(allow_private=True)
    async with guard.client(timeout=5) as http:
        for location in ("ftp://127.0.0.1/x", "http://user:pw@127.0.0.1:9/x"):
            async with Server(answer=_redirect(location)).running() as server:
                with pytest.raises(UrlNotAllowed):
                    await fetch_url(http, server.base + "/f", max_bytes=100)


async def test_no_cookie_is_kept_between_requests() -> None:
    answer = _response(200, b"ok", {"set-cookie": "session=tenant-a; Path=/"})
    async with (
        Server(answer=lambda path: answer).running() as server,
        UrlGuard(allow_private=True).client(timeout=5) as http,
    ):
        await http.get(server.base + "/tenant-a")
        await http.get(server.base + "/tenant-b")
        assert len(http.cookies.jar) == 0
    assert "cookie:" not in server.heads[1].lower()


async def test_proxies_and_netrc_from_the_environment_are_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy would resolve the host itself, past the guard.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    async with Server().running() as server, UrlGuard(allow_private=True).client(timeout=5) as http:
        assert (await http.get(server.base + "/direct")).status_code == 200
    assert server.heads[0].startswith("GET /direct ")


def _certificate_for(name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA and a server certificate for `name` (DNS name only, no IP address in it): the
    server's TLS context and a client context trusting that CA alone."""
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("test CA", ca_key, "test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = build(name, key, "test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.NamedTemporaryFile("wb", suffix=".pem") as file:
        file.write(leaf.public_bytes(pem))
        file.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        file.flush()
        server.load_cert_chain(file.name)
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client


async def test_tls_is_verified_against_the_hostname_not_the_address() -> None:
    """The socket goes to the checked address, but SNI and the certificate check still use
    the URL's hostname: `https://localhost` verifies against a certificate naming only
    localhost, and the same server by address fails (its certificate names no address)."""
    server_tls, client_tls = _certificate_for("localhost")
    guard = UrlGuard(allow_private=True)
    async with (
        Server(tls=server_tls).running() as server,
        guard.client(timeout=5, verify=client_tls) as http,
    ):
        response = await http.get(f"https://localhost:{server.port}/over-tls")
        assert response.status_code == 200
        assert f"host: localhost:{server.port}" in server.heads[0].lower()
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"https://127.0.0.1:{server.port}/by-address")
    assert len(server.heads) == 1


# --- the service --------------------------------------------------------------------------------


async def test_media_by_url_on_loopback_is_refused_and_nothing_is_fetched(
    settings: Settings,
) -> None:
    async with (
        Server(answer=lambda path: _response(200, b"\xff\xd8\xff" + bytes(100))).running() as files,
        meta_running(replace(settings, allow_private_urls=False), run_worker=False) as meta,
    ):
        for url in (
            files.base + "/pic.jpg",
            f"http://localhost:{files.port}/pic.jpg",
            f"http://[::ffff:127.0.0.1]:{files.port}/pic.jpg",
            "http://169.254.169.254/latest/meta-data/iam",
        ):
            response = await meta.app.client.post(
                "/v1/media",
                json={"from": NUMBER_A, "type": "image", "url": url},
                headers=meta.tenant(),
            )
            assert response.status_code == 422, (url, response.text)
            error = response.json()["error"]
            assert error["code"] == "url_not_allowed", url
            assert "address" in error["message"]
    assert files.heads == []


async def test_put_webhook_refuses_a_private_url(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with serve(replace(settings, allow_private_urls=False), run_worker=False) as web:
        tenant = await web.create_tenant()
        headers = {"authorization": f"Bearer {tenant['api_key']}"}
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "https://[::1]/hook",
            "http://10.0.0.1/hook",
            "https://user:pw@example.com/hook",
        ):
            response = await web.client.put(
                "/v1/webhooks", json={"url": url, "events": ["message.received"]}, headers=headers
            )
            assert response.status_code == 422, (url, response.text)
            assert response.json()["error"]["code"] == "url_not_allowed", url
        assert await db.fetchval("SELECT count(*) FROM tenant_webhooks") == 0


async def test_the_forwarder_checks_again_at_every_delivery(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """A URL accepted when it was set (here: while private addresses were allowed, as if its
    name resolved publicly then) is checked at delivery: nothing is posted, the row records
    why and is retried later (DNS may change back), until the attempts run out."""
    async with (
        Server().running() as receiver,
        serve(settings, run_worker=False) as web,
    ):
        tenant = await web.create_tenant()
        put = await web.client.put(
            "/v1/webhooks",
            json={"url": receiver.base + "/hook", "events": ["message.received"]},
            headers={"authorization": f"Bearer {tenant['api_key']}"},
        )
        assert put.status_code == 200, put.text
        await enqueue_forward(db, tenant["id"], "message.received", {"n": 1}, "one")
        assert settings.database_url and settings.secret_key
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            # A production process's client: private addresses refused.
            async with UrlGuard(allow_private=False).client(timeout=10.0) as guarded_client:
                forwarder = Forwarder(
                    pool,
                    SecretBox(settings.secret_key),
                    Metrics(),
                    http=guarded_client,
                    backoff=Backoff(base=30.0, cap=60.0),
                    max_attempts=3,
                    poll_seconds=0.1,
                )
                stopping = asyncio.Event()
                running = asyncio.create_task(run_consumer(forwarder, stopping))
                try:
                    async with asyncio.timeout(10):
                        while not await db.fetchval("SELECT last_error FROM forwards"):
                            await asyncio.sleep(0.02)
                finally:
                    stopping.set()
                    forwarder.wake.set()
                    await running
        finally:
            await pool.close()
    row = await db.fetchrow("SELECT * FROM forwards")
    assert row["state"] == "pending" and row["attempts"] == 1
    assert row["last_error"] == "url_not_allowed: its host resolves to a loopback address"
    assert row["last_status"] is None
    assert receiver.heads == []
