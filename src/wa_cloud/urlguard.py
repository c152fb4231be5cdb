"""The one guard every tenant-supplied URL goes through (media by URL, forwarding, and every
later one: AI tools, gateways), so that a tenant cannot make us reach our own network (SSRF).

A URL is checked (http or https, a host, no credentials in it), its host is resolved once and
every address it resolves to must be public: loopback, private, link-local, multicast,
reserved, unspecified, carrier-grade NAT and the IPv6 forms that embed such an IPv4 address
(IPv4-mapped, NAT64, 6to4, Teredo) are refused. The connection is then made to the checked
address itself, never after a second lookup, so a name that answers a public address to the
check and a private one to the connect (DNS rebinding) gains nothing. The check sits in the
HTTP client's network backend: every connection, every redirect hop included, goes through
it, and what passes on to TLS is still the hostname (SNI and certificate checked against it).

`WA_ALLOW_PRIVATE_URLS` lifts the address check only (dev and tests with loopback fakes); the
URL rules, the single lookup and the refusing cookie jar stay.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import Final
from urllib.request import Request as CookieRequest

import httpcore
import httpx

from wa_cloud.errors import ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (injectable: tests name hosts without DNS).
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
# address -> why it is refused, or None (injectable: a test may let one loopback address pass
# as if it were public, to see the next hop refused by the real rule).
AddressRule = Callable[[IPAddress], str | None]

RESOLVE_SECONDS: Final = 5.0
MAX_REDIRECTS: Final = 5
SCHEMES: Final = frozenset({"http", "https"})


class UrlNotAllowed(ApiError):
    """A tenant's URL we will not fetch or post to; `reason` says why, never more."""

    def __init__(self, reason: str) -> None:
        super().__init__(422, "url_not_allowed", f"The URL is not allowed: {reason}.")
        self.reason = reason


class MalformedUrl(UrlNotAllowed):
    """Not an absolute http(s) URL at all (as opposed to one the policy refuses)."""


# --- the URL ----------------------------------------------------------------------------------


def checked_url(url: str | httpx.URL) -> httpx.URL:
    """The URL parsed as the client will use it: http(s), a host, no user or password."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, TypeError, ValueError):
        raise MalformedUrl("it is not a valid URL") from None
    if parsed.scheme not in SCHEMES:
        raise MalformedUrl("only http and https URLs are allowed")
    if not parsed.raw_host:
        raise MalformedUrl("it has no host")
    if port is not None and not 0 < port < 65536:
        raise MalformedUrl("its port is not valid")
    if parsed.userinfo:
        # Credentials in a URL end up in logs and in every redirect; a header is the way.
        raise UrlNotAllowed("it must not carry a user name or password")
    return parsed


def host_of(url: httpx.URL) -> str:
    """The host as the connection pool names it: ASCII (IDNA), IPv6 without brackets."""
    return url.raw_host.decode("ascii")


# --- the addresses ------------------------------------------------------------------------------


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(*pairs: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(net), kind) for net, kind in pairs)


# IANA's special-purpose registries, written out rather than taken from `ipaddress`'s
# is_global: its tables differ between Python versions (3.11 calls 192.0.0.9 and 224.0.0.1
# global), and a guard must not change with the interpreter.
_V4_REFUSED: Final = _networks(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # with 255.255.255.255, the broadcast address
)
_V6_REFUSED: Final = _networks(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    # Local-use NAT64 (RFC 8215): the translator and its prefix length are the operator's,
    # so the embedded IPv4 address cannot be read reliably; none of it is public.
    ("64:ff9b:1::/48", "local NAT64"),
    ("100::/64", "reserved"),
    ("2001::/32", "Teredo"),  # a tunnel whose client address is hidden in the bits
    ("2001::/23", "reserved"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "reserved"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),  # site-local, deprecated but still routed by some
    ("ff00::/8", "multicast"),
)
_V6_GLOBAL_UNICAST: Final = ipaddress.ip_network("2000::/3")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 one stands for, and how: a connection to it reaches that."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused ("a loopback address"), None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner, form = embedded
            refused = address_refusal(inner)
            return None if refused is None else f"{refused} ({form})"
        address = ipaddress.IPv6Address(int(address))  # without a scope id (fe80::1%eth0)
        for network, kind in _V6_REFUSED:
            if address in network:
                return _an(kind)
        if address not in _V6_GLOBAL_UNICAST:
            return _an("reserved")  # not allocated for unicast at all
        return None
    for network, kind in _V4_REFUSED:
        if address in network:
            return _an(kind)
    return None


def _an(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind + " address"


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is itself), in the resolver's order."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    # getaddrinfo reads forms like `127.1` or `0x7f000001` the way a connect would: checking
    # its answer, not our own parse of the name, leaves no reading of the host unchecked.
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    found: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


# --- the guard ----------------------------------------------------------------------------------


class UrlGuard:
    """The policy: whether private addresses are allowed, how hosts resolve, which addresses
    are refused. `check` is for a URL a tenant sets; `client` fetches through the guard."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolve: Resolver = resolve_host,
        refusal: AddressRule = address_refusal,
    ) -> None:
        self.allow_private = allow_private
        self._resolve = resolve
        self._refusal = refusal

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """Resolve once and check every answer: one refused address refuses the host (which
        one a connection would use is the resolver's choice, not ours). A host that does not
        resolve raises OSError, TimeoutError on a slow resolver: network trouble, not policy."""
        async with asyncio.timeout(RESOLVE_SECONDS):
            found = await self._resolve(host, port)
        if not found:
            raise OSError(f"{host} resolves to no address")
        if not self.allow_private:
            for address in found:
                refused = self._refusal(address)
                if refused is not None:
                    raise UrlNotAllowed(f"its host resolves to {refused}")
        return found

    async def check(self, url: str) -> httpx.URL:
        """A URL a tenant sets (e.g. its webhook): refused now rather than at every use. Every
        use checks again: what the host resolves to may change after this."""
        parsed = checked_url(url)
        if not self.allow_private:
            try:
                await self.addresses(host_of(parsed), parsed.port or _default_port(parsed))
            except TimeoutError:
                raise UrlNotAllowed("its host could not be resolved in time") from None
            except (OSError, UnicodeError):
                # Nothing to check, so nothing to allow: the tenant learns it now, not later.
                raise UrlNotAllowed("its host does not resolve") from None
        return parsed

    def client(
        self,
        *,
        timeout: float,
        max_connections: int = 100,
        verify: ssl.SSLContext | bool = True,
    ) -> GuardedClient:
        """An HTTP client whose every connection goes through this guard. Open it once per
        process and share it: each client loads the CA bundle (tens of milliseconds)."""
        return GuardedClient(self, timeout=timeout, max_connections=max_connections, verify=verify)


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the guard in front: resolve, check, connect to the checked
    address. TLS is started afterwards by httpcore with the URL's hostname, not this address."""

    def __init__(self, guard: UrlGuard, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._guard = guard
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface names it)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        started = time.monotonic()
        try:
            addresses = await self._guard.addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from None
        failure: Exception | None = None
        for address in addresses:
            left = None if timeout is None else timeout - (time.monotonic() - started)
            if left is not None and left <= 0:
                raise httpcore.ConnectTimeout("connect timed out")
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=left,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the next address, as a resolver's caller would
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface names it)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable through tenant URLs")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guarded backend: never a proxy, never the environment."""

    def __init__(self, guard: UrlGuard, *, limits: httpx.Limits, verify: ssl.SSLContext | bool):
        context = (
            verify
            if isinstance(verify, ssl.SSLContext)
            else httpx.create_ssl_context(verify=verify, trust_env=False)
        )
        super().__init__(verify=context, trust_env=False, limits=limits)
        # httpx takes no network backend, so the pool it just built is built again exactly as
        # it does (httpx 0.28, AsyncHTTPTransport.__init__ without a proxy) plus ours. Should a
        # later httpx keep its pool elsewhere, fail here rather than run unguarded.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx's transport changed: the URL guard cannot be installed")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedNetworkBackend(guard),
        )


class RefuseAllCookies(DefaultCookiePolicy):
    """Keep no cookie: the client is shared by every tenant, so a cookie one tenant's server
    set would otherwise go to another tenant's URL on the same host."""

    def set_ok(self, cookie: Cookie, request: CookieRequest) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: CookieRequest) -> bool:
        return False


class GuardedClient(httpx.AsyncClient):
    """The client for tenant URLs (its type says so: the forwarder refuses any other)."""

    def __init__(
        self,
        guard: UrlGuard,
        *,
        timeout: float,
        max_connections: int,
        verify: ssl.SSLContext | bool,
    ) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections // 2
        )
        super().__init__(
            transport=GuardedTransport(guard, limits=limits, verify=verify),
            timeout=httpx.Timeout(timeout, connect=5.0),
            # The environment could name a proxy (which would resolve the host itself) or a
            # .netrc (whose passwords would go to tenants' servers): neither applies here.
            trust_env=False,
            follow_redirects=False,
            max_redirects=MAX_REDIRECTS,
            cookies=CookieJar(policy=RefuseAllCookies()),
            event_hooks={"request": [_check_request]},
        )
        self.guard = guard


async def _check_request(request: httpx.Request) -> None:
    # Every request, each redirect hop included: the URL rules (the backend checks addresses).
    checked_url(request.url)
