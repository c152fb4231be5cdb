"""Meta's error codes map to the right exception, and lower-level failures are translated at
the client's one boundary (httpx's MockTransport stands in for the network)."""

from __future__ import annotations

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


def _client(handler: httpx.MockTransport) -> GraphClient:
    return GraphClient(httpx.AsyncClient(transport=handler), "https://graph.test", "v23.0")


@pytest.mark.parametrize(
    ("raised", "send_cls", "other_cls"),
    [
        (httpx.ConnectError("refused"), e.GraphUnavailable, e.GraphUnavailable),
        (httpx.ConnectTimeout("slow"), e.GraphUnavailable, e.GraphUnavailable),
        (httpx.ReadTimeout("no answer"), e.SendOutcomeUnknown, e.GraphUnavailable),
        (httpx.RemoteProtocolError("dropped"), e.SendOutcomeUnknown, e.GraphUnavailable),
        (httpx.ReadError("reset"), e.SendOutcomeUnknown, e.GraphUnavailable),
        (httpx.WriteError("broken pipe"), e.GraphUnavailable, e.GraphUnavailable),
    ],
)
async def test_network_failures_are_translated(
    raised: Exception, send_cls: type, other_cls: type
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(send_cls) as sent:
        await client.send_message("1", "tok", {"type": "text"})
    assert isinstance(sent.value.__cause__, httpx.HTTPError)
    with pytest.raises(other_cls):
        await client.request("GET", "1", "tok")


async def test_a_proxy_502_page_is_transient_not_a_key_error() -> None:
    client = _client(
        httpx.MockTransport(lambda r: httpx.Response(502, text="<html>Bad Gateway</html>"))
    )
    with pytest.raises(e.GraphUnavailable):
        await client.send_message("1", "tok", {"type": "text"})


async def test_a_200_without_a_message_id_is_unknown() -> None:
    client = _client(httpx.MockTransport(lambda r: httpx.Response(200, json={"ok": 1})))
    with pytest.raises(e.SendOutcomeUnknown):
        await client.send_message("1", "tok", {"type": "text"})


async def test_retry_after_header_is_read() -> None:
    client = _client(
        httpx.MockTransport(
            lambda r: httpx.Response(429, json=meta_error(4), headers={"retry-after": "7"})
        )
    )
    with pytest.raises(e.ApiRateLimited) as raised:
        await client.request("GET", "1", "tok")
    assert raised.value.retry_after == 7.0
