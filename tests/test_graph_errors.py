"""Meta's error codes map to the right exception, and lower-level failures are translated at
the client's one boundary (httpx's MockTransport stands in for the network)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import httpx
import pytest

from wa_cloud.graph import errors as e
from wa_cloud.graph.client import GraphClient
from wa_cloud.graph.retry import delay_for

# The table of the Meta doc, section 6: code -> (class, retryable).
TABLE = {
    0: (e.AuthenticationFailed, False),
    190: (e.AuthenticationFailed, False),
    3: (e.PermissionDenied, False),
    10: (e.PermissionDenied, False),
    131005: (e.PermissionDenied, False),
    4: (e.ApiRateLimited, True),
    80007: (e.ApiRateLimited, True),
    130429: (e.ThroughputExceeded, True),
    131000: (e.ServiceTemporarilyUnavailable, True),
    131016: (e.ServiceTemporarilyUnavailable, True),
    131057: (e.ServiceTemporarilyUnavailable, True),
    1: (e.ServiceTemporarilyUnavailable, True),
    2: (e.ServiceTemporarilyUnavailable, True),
    131056: (e.PairRateLimited, True),
    131048: (e.SpamLimited, False),
    131049: (e.SpamLimited, False),
    131008: (e.InvalidParameter, False),
    131009: (e.InvalidParameter, False),
    100: (e.InvalidParameter, False),
    131021: (e.RecipientIsSender, False),
    131026: (e.Undeliverable, False),
    131031: (e.AccountProblem, False),
    131042: (e.AccountProblem, False),
    131045: (e.AccountProblem, False),
    368: (e.AccountProblem, False),
    133010: (e.AccountProblem, False),
    131047: (e.OutsideWindow, False),
    131050: (e.MarketingOptOut, False),
    131051: (e.UnsupportedMedia, False),
    131053: (e.UnsupportedMedia, False),
    **{
        c: (e.TemplateError, False)
        for c in (132000, 132001, 132005, 132007, 132012, 132015, 132016, 132018)
    },
}


def meta_error(code: int, **extra: object) -> dict[str, object]:
    return {
        "error": {
            "message": f"(#{code}) something",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "the details"},
            "fbtrace_id": "AbCdEf",
            **extra,
        }
    }


@pytest.mark.parametrize("code", sorted(TABLE))
def test_every_code_of_the_table_maps(code: int) -> None:
    cls, retryable = TABLE[code]
    error = e.error_from_response(400, meta_error(code))
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.code == code
    assert error.details == "the details"
    assert error.fbtrace_id == "AbCdEf"
    assert error.as_dict() == {"code": code, "title": "OAuthException", "message": "the details"}
    assert error.args == (f"(#{code}) something",)


def test_the_table_covers_every_mapped_code() -> None:
    assert set(e.ERROR_CODES) == set(TABLE)


def test_unknown_codes() -> None:
    assert type(e.error_from_response(400, meta_error(999999))) is e.PermanentGraphError
    assert e.error_from_response(400, meta_error(999999, is_transient=True)).retryable
    assert e.error_from_response(500, meta_error(999999)).retryable
    assert isinstance(e.error_from_response(400, meta_error(132999)), e.TemplateError)


@pytest.mark.parametrize(
    ("status", "retryable"), [(502, True), (503, True), (429, True), (404, False)]
)
def test_non_json_answers(status: int, retryable: bool) -> None:
    error = e.error_from_response(status, None)
    assert error.retryable is retryable


def test_pair_rate_backs_off_much_longer_and_retry_after_wins() -> None:
    pair = e.PairRateLimited("x", code=131056)
    throughput = e.ThroughputExceeded("x", code=130429)
    assert min(delay_for(pair, 1) for _ in range(50)) >= 15
    assert max(delay_for(throughput, 1) for _ in range(50)) <= 0.5
    assert delay_for(e.GraphUnavailable("x", retry_after=120.0), 1) == 120.0


@contextlib.asynccontextmanager
async def _client(handler: httpx.MockTransport, base_url: str = "https://graph.test"):
    """Management calls through httpx's MockTransport; sends over aiohttp to `base_url`."""
    async with (
        httpx.AsyncClient(transport=handler) as http,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as sends,
    ):
        yield GraphClient(http, sends, base_url, "v23.0")


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError("sends must not go through httpx")


@pytest.mark.parametrize(
    ("raised", "cls"),
    [
        (httpx.ConnectError("refused"), e.GraphUnavailable),
        (httpx.ConnectTimeout("slow"), e.GraphUnavailable),
        (httpx.ReadTimeout("no answer"), e.GraphUnavailable),
        (httpx.RemoteProtocolError("dropped"), e.GraphUnavailable),
        (httpx.ReadError("reset"), e.GraphUnavailable),
        (httpx.WriteError("broken pipe"), e.GraphUnavailable),
    ],
)
async def test_network_failures_of_management_calls_are_transient(
    raised: Exception, cls: type
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    async with _client(httpx.MockTransport(handler)) as client:
        with pytest.raises(cls) as caught:
            await client.request("GET", "1", "tok")
    assert isinstance(caught.value.__cause__, httpx.HTTPError)


@contextlib.asynccontextmanager
async def _meta_that(behaviour: bytes | None):
    """A loopback server that reads one request, then answers `behaviour` (raw HTTP), or
    closes without a word (b"close"), or never answers (None)."""
    seen: list[bytes] = []
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            if behaviour is None:
                await asyncio.sleep(5)
            elif behaviour != b"close":
                writer.write(behaviour)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def _http(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize(
    ("answer", "cls"),
    [
        (None, e.SendOutcomeUnknown),  # went out, no answer in time
        (b"close", e.SendOutcomeUnknown),  # went out, connection dropped
        # An edge's 5xx page does not say whether Meta took it: unknown, never resent blindly.
        (_http("502 Bad Gateway", b"<html>Bad Gateway</html>"), e.SendOutcomeUnknown),
        (_http("504 Gateway Timeout", b""), e.SendOutcomeUnknown),
        # Meta's own error object at a 5xx says it did not: retried like other transient ones.
        (
            _http("500 Internal Server Error", json.dumps(meta_error(131000)).encode()),
            e.ServiceTemporarilyUnavailable,
        ),
        (_http("200 OK", b'{"ok": 1}', "content-type: application/json"), e.SendOutcomeUnknown),
        (_http("200 OK", b"<html>", "content-type: text/html"), e.SendOutcomeUnknown),
    ],
    ids=[
        "timeout",
        "dropped",
        "proxy-502-page",
        "proxy-504-empty",
        "meta-500-error",
        "200-without-id",
        "200-not-json",
    ],
)
async def test_send_failures_are_translated(answer: bytes | None, cls: type) -> None:
    async with _meta_that(answer) as (url, seen), _client(httpx.MockTransport(_refuse), url) as c:
        with pytest.raises(cls):
            await c.send_message("1", "tok", {"type": "text"})
    assert seen and seen[0].startswith(b"POST /v23.0/1/messages")
    assert b"authorization: Bearer tok" in seen[0].lower().replace(b"bearer", b"Bearer")


async def test_send_to_a_closed_port_is_safe_to_retry() -> None:
    async with _meta_that(b"close") as (url, _):
        closed = url  # the server closes on leaving the block
    async with _client(httpx.MockTransport(_refuse), closed) as client:
        with pytest.raises(e.GraphUnavailable):
            await client.send_message("1", "tok", {"type": "text"})


async def test_send_error_json_and_retry_after_are_read() -> None:
    answer = _http("429 Too Many Requests", json.dumps(meta_error(4)).encode(), "retry-after: 7")
    async with _meta_that(answer) as (url, _), _client(httpx.MockTransport(_refuse), url) as c:
        with pytest.raises(e.ApiRateLimited) as raised:
            await c.send_message("1", "tok", {"type": "text"})
    assert raised.value.retry_after == 7.0
    assert raised.value.code == 4


async def test_retry_after_header_is_read() -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(429, json=meta_error(4), headers={"retry-after": "7"})
    )
    async with _client(transport) as client:
        with pytest.raises(e.ApiRateLimited) as raised:
            await client.request("GET", "1", "tok")
    assert raised.value.retry_after == 7.0
