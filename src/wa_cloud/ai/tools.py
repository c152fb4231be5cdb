"""A number's HTTP tools: what the model may call to look things up in the business's systems.

A tool is part of the bot configuration (`"tools"`): a name, a description and JSON Schema
parameters (what the model sees), and the request it stands for: a method, a URL, headers and
a body template. `{{param}}` in the URL is replaced by the argument percent-encoded, in the body
by the argument JSON-escaped (a string without its quotes, so a template writes `"{{name}}"`;
numbers, booleans, lists and objects as JSON). Header values are secrets: sealed in the row
(`bots.tool_secrets_enc`), never shown again; a PUT that omits a value (null) keeps the stored
one only while the tool's host stays the same, as the model key does with `base_url`.

A call goes through the URL guard's client (a tenant's tool cannot reach our network), within
its timeout, its response read up to `MAX_RESPONSE_BYTES`. Every outcome, failures included, is
a result the model reads (`{"status", "body"}` or `{"error"}`): a tool never crashes a reply.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import httpx

from wa_cloud.errors import Unprocessable
from wa_cloud.secretbox import SecretBox
from wa_cloud.tenants.sealed import BOT_TOOL_SECRETS
from wa_cloud.urlguard import UrlNotAllowed, checked_url, host_of

MAX_TOOLS: Final = 16
MAX_ROUNDS: Final = 3  # model turns that may call tools before it must answer
MAX_RESPONSE_BYTES: Final = 16_384  # of a tool's response, what the model reads
MAX_TIMEOUT_SECONDS: Final = 30.0
DEFAULT_TIMEOUT_SECONDS: Final = 10.0
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
NAME: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # what OpenAI accepts as a function name
HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")  # an HTTP token
PLACEHOLDER: Final = re.compile(r"\{\{\s*([a-zA-Z0-9_]{1,64})\s*\}\}")
# Headers the request itself decides: a tenant's value would only confuse it or the server.
RESERVED_HEADERS: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "cookie"}
)
FIELDS: Final = frozenset(
    {"name", "description", "parameters", "method", "url", "headers", "body", "timeout_seconds"}
)
# `send_file` and others the assistant brings itself: a tenant's tool may not take the name.
BUILT_IN_NAMES: Final = frozenset({"send_file"})

Secrets = dict[str, dict[str, str]]  # tool name -> header name -> value


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]
    method: str
    url: str
    header_names: tuple[str, ...] = ()
    body: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def shown(self) -> dict[str, Any]:
        """As GET shows it (and as it is stored): header values never."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
            "method": self.method,
            "url": self.url,
            "headers": {h: None for h in self.header_names},
            "body": self.body,
            "timeout_seconds": self.timeout_seconds,
        }

    @classmethod
    def stored(cls, value: Mapping[str, Any]) -> Tool:
        return cls(
            name=value["name"],
            description=value.get("description") or "",
            parameters=value.get("parameters") or {"type": "object", "properties": {}},
            method=value.get("method") or "GET",
            url=value["url"],
            header_names=tuple(value.get("headers") or ()),
            body=value.get("body"),
            timeout_seconds=float(value.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS),
        )


def _bad(index: int, rule: str) -> Unprocessable:
    return Unprocessable(f"'tools[{index}]' {rule}.", "invalid_field")


def _url(index: int, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 2000:
        raise _bad(index, "needs a 'url' (an http(s) URL, at most 2,000 characters)")
    # Placeholders stand in for a path segment or a query value while the shape is checked.
    try:
        url = checked_url(PLACEHOLDER.sub("x", value))
    except UrlNotAllowed:
        raise _bad(index, "needs a 'url' that is an absolute http(s) URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise _bad(index, "needs a 'url' that is an absolute http(s) URL")
    if _host(value, "x") != _host(value, "y"):
        raise _bad(index, "may not put a '{{param}}' in the URL's host")
    return value


def _parameters(index: int, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {"type": "object", "properties": {}}
    if not isinstance(value, Mapping) or value.get("type") != "object":
        raise _bad(index, '\'parameters\' must be a JSON Schema object ({"type": "object", ...})')
    if len(json.dumps(value)) > 16_384:
        raise _bad(index, "'parameters' must be at most 16 KB of JSON")
    properties = value.get("properties", {})
    if not isinstance(properties, Mapping):
        raise _bad(index, "'parameters.properties' must be an object")
    return value


def parse_tools(
    value: Any, *, current: Sequence[Tool], secrets: Secrets
) -> tuple[tuple[Tool, ...], Secrets]:
    """A PUT's `tools` and the header values they keep or set. A value given is the new secret;
    a null keeps the stored one while the tool's host is the same (never sent to a new host
    unasked)."""
    if value is None:
        return (), {}
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise Unprocessable(
            f"'tools' must be a list of at most {MAX_TOOLS} tools.", "invalid_field"
        )
    stored = {t.name: t for t in current}
    tools: list[Tool] = []
    kept: Secrets = {}
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _bad(index, "must be an object")
        unknown = sorted(set(item) - FIELDS)
        if unknown:
            raise _bad(index, f"has unknown field(s): {', '.join(unknown)}")
        name = item.get("name")
        if not isinstance(name, str) or not NAME.match(name) or name in BUILT_IN_NAMES:
            raise _bad(
                index,
                "needs a 'name' of letters, digits, '_' or '-' (at most 64), not a built-in tool's",
            )
        if any(t.name == name for t in tools):
            raise _bad(index, f"repeats the name '{name}'")
        description = item.get("description") or ""
        if not isinstance(description, str) or len(description) > 1024:
            raise _bad(index, "'description' must be text of at most 1,024 characters")
        method = str(item.get("method") or "GET").upper()
        if method not in METHODS:
            raise _bad(index, "'method' must be one of " + ", ".join(METHODS))
        url = _url(index, item.get("url"))
        body = item.get("body")
        if body is not None and (not isinstance(body, str) or len(body) > 16_384):
            raise _bad(index, "'body' must be a text template of at most 16 KB")
        timeout = item.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_TIMEOUT_SECONDS
        ):
            raise _bad(
                index, f"'timeout_seconds' must be above 0 and at most {MAX_TIMEOUT_SECONDS:g}"
            )
        headers = item.get("headers") or {}
        if not isinstance(headers, Mapping) or len(headers) > 20:
            raise _bad(index, "'headers' must be an object of at most 20 headers")
        previous = stored.get(name)
        same_host = previous is not None and _host(previous.url) == _host(url)
        values: dict[str, str] = {}
        for header, secret in headers.items():
            if not isinstance(header, str) or not HEADER_NAME.match(header):
                raise _bad(index, f"has a header name that is not an HTTP token: {header!r}")
            if header.lower() in RESERVED_HEADERS:
                raise _bad(index, f"may not set the '{header}' header")
            if secret is None:
                old = secrets.get(name, {}).get(header) if same_host else None
                if old is None:
                    raise _bad(
                        index,
                        f"needs a value for the header '{header}' (its host changed or it is new)",
                    )
                values[header] = old
            elif isinstance(secret, str) and secret.isprintable() and len(secret) <= 4096:
                values[header] = secret
            else:
                raise _bad(index, f"has a header '{header}' whose value is not printable text")
        tools.append(
            Tool(
                name=name,
                description=description,
                parameters=_parameters(index, item.get("parameters")),
                method=method,
                url=url,
                header_names=tuple(headers),
                body=body,
                timeout_seconds=float(timeout),
            )
        )
        if values:
            kept[name] = values
    return tuple(tools), kept


def open_secrets(box: SecretBox, phone_number_id: str, sealed: bytes | None) -> Secrets:
    """The stored header values of a number's tools (raises SecretUnreadable as any secret)."""
    if sealed is None:
        return {}
    value = json.loads(box.open(sealed, context=BOT_TOOL_SECRETS.context(phone_number_id)))
    return {
        str(tool): {str(h): str(v) for h, v in headers.items()}
        for tool, headers in value.items()
        if isinstance(headers, dict)
    }


def _host(url: str, stand_in: str = "x") -> str:
    try:
        return host_of(checked_url(PLACEHOLDER.sub(stand_in, url)))
    except UrlNotAllowed:
        return ""


# --- the calls ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ToolCall:
    """One call as it is logged: never a header's value."""

    name: str
    arguments: Mapping[str, Any]
    status: int | None = None
    error: str | None = None
    duration_ms: int = 0
    result: str = field(default="", repr=False)


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)[1:-1]
    return json.dumps(value, ensure_ascii=False)


def _url_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return quote(text, safe="")


def interpolate(template: str, arguments: Mapping[str, Any], encode: Any) -> str:
    """`{{param}}` replaced by the encoded argument; a missing one by nothing."""
    return PLACEHOLDER.sub(
        lambda m: encode(arguments[m.group(1)]) if m.group(1) in arguments else "", template
    )


def parse_arguments(raw: str | None) -> dict[str, Any] | None:
    """The model's arguments (a JSON object as text); None when they are not one."""
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def call_tool(
    http: httpx.AsyncClient, tool: Tool, headers: Mapping[str, str], raw_arguments: str | None
) -> ToolCall:
    """Run one call; the outcome is always a result for the model, never an exception."""
    arguments = parse_arguments(raw_arguments)
    call = ToolCall(tool.name, arguments or {})
    started = time.perf_counter()
    try:
        if arguments is None:
            call.error = "the arguments were not a JSON object"
            return call
        url = interpolate(tool.url, arguments, _url_text)
        content = None if tool.body is None else interpolate(tool.body, arguments, _json_text)
        sent = dict(headers)
        if content is not None and not any(h.lower() == "content-type" for h in sent):
            sent["Content-Type"] = "application/json"
        request = http.build_request(
            tool.method,
            url,
            headers=sent,
            content=None if content is None else content.encode(),
            timeout=tool.timeout_seconds,
        )
        async with asyncio.timeout(tool.timeout_seconds):
            response = await http.send(request, stream=True)
            try:
                body = await _read_capped(response)
            finally:
                await response.aclose()
        call.status = response.status_code
        call.result = json.dumps({"status": response.status_code, "body": body}, ensure_ascii=False)
    except UrlNotAllowed as exc:
        call.error = f"the tool's address is not allowed ({exc.reason})"
    except (TimeoutError, httpx.TimeoutException):
        call.error = f"no answer within {tool.timeout_seconds:g} s"
    except httpx.HTTPError as exc:
        call.error = f"the request failed ({type(exc).__name__})"
    finally:
        call.duration_ms = int((time.perf_counter() - started) * 1000)
        if call.error is not None:
            call.result = json.dumps({"error": call.error})
    return call


async def _read_capped(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    truncated = False
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            truncated = True
            break
    text = b"".join(chunks)[:MAX_RESPONSE_BYTES].decode("utf-8", "replace")
    return text + (" [truncated]" if truncated else "")


class ToolBox:
    """A reply's tools: their definitions for the model and their calls, logged in order."""

    def __init__(self, http: httpx.AsyncClient, tools: Sequence[Tool], secrets: Secrets) -> None:
        self._http = http
        self._tools = {t.name: t for t in tools}
        self._secrets = secrets
        self.calls: list[ToolCall] = []

    def __bool__(self) -> bool:
        return bool(self._tools)

    def specs(self) -> list[tuple[str, str, Mapping[str, Any]]]:
        return [(t.name, t.description, t.parameters) for t in self._tools.values()]

    async def run(self, name: str, raw_arguments: str | None) -> str:
        tool = self._tools.get(name)
        if tool is None:
            call = ToolCall(name, parse_arguments(raw_arguments) or {}, error="no such tool")
            call.result = json.dumps({"error": f"there is no tool named {name[:64]!r}"})
        else:
            call = await call_tool(self._http, tool, self._secrets.get(name, {}), raw_arguments)
        self.calls.append(call)
        return call.result
