"""A number's HTTP tools: what the model may call to look things up in the business's systems.

A tool is part of the bot configuration (`"tools"`): a name, a description and JSON Schema
parameters (what the model sees), and the request it stands for: a method, a URL, headers and
a body template. `{{param}}` in the URL is replaced by the argument percent-encoded (in the path
it must be a real segment: not empty, "." or ".."); in the body by the argument as JSON: inside
a string literal its escaped text (`"{{name}}"`), elsewhere a JSON value (`{{qty}}`), so no
argument changes the body's shape. Header values are secrets: sealed in the row
(`bots.tool_secrets_enc`), never shown again; a PUT that omits a value (null) keeps the stored
one only while the tool's scheme, host and port stay the same, as the model key does with
`base_url`.

A call goes through the URL guard's client (a tenant's tool cannot reach our network), within
its timeout, its response read up to `MAX_RESPONSE_BYTES` (asked uncompressed, inflated in
bounded steps if it comes compressed), at most `MAX_CALLS` calls a reply. Every outcome,
failures included, is a result the model reads (`{"status", "body"}` or `{"error"}`): a tool
never crashes a reply.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import quote

import httpx

from wa_cloud.errors import Unprocessable
from wa_cloud.secretbox import SecretBox
from wa_cloud.tenants.sealed import BOT_TOOL_SECRETS
from wa_cloud.urlguard import UrlNotAllowed, checked_url, host_of

MAX_TOOLS: Final = 16
MAX_ROUNDS: Final = 3  # model turns that may call tools before it must answer
MAX_CALLS: Final = 8  # calls in one reply, all rounds together; more are answered with an error
# What all of a reply's calls may take together (a round's calls run at once): the model's own
# budget is apart, so slow tools shorten the tools' answers, never fail the reply.
TOOLS_BUDGET_SECONDS: Final = 30.0
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
    origin = _origin(value, "x")
    if origin is None:
        raise _bad(index, "needs a 'url' that is an absolute http(s) URL")
    if _origin(value, "y") != origin:
        raise _bad(index, "may not put a '{{param}}' in the URL's scheme, host or port")
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
        if not isinstance(name, str) or not NAME.fullmatch(name) or name in BUILT_IN_NAMES:
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
        # Where the secrets went before: scheme, host and port (not http, not another port).
        same_host = previous is not None and _origin(previous.url) == _origin(url)
        values: dict[str, str] = {}
        for header, secret in headers.items():
            if not isinstance(header, str) or not HEADER_NAME.fullmatch(header):
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
            elif (
                isinstance(secret, str)
                and secret.isascii()  # what HTTP carries in a header, as the model key
                and secret.isprintable()
                and len(secret) <= 4096
            ):
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


def _origin(url: str, stand_in: str = "x") -> tuple[str, str, int | None] | None:
    """Scheme, host and port of a tool's URL with its placeholders filled; None: not an
    absolute http(s) URL (a malformed international host name included)."""
    try:
        checked = checked_url(PLACEHOLDER.sub(stand_in, url))
        if checked.scheme not in ("http", "https") or not checked.host:  # (decodes IDNA)
            return None
        return checked.scheme, host_of(checked), checked.port
    except (UrlNotAllowed, UnicodeError, ValueError):
        return None


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


class BadArgument(ValueError):
    """An argument that cannot go where its placeholder is (said to the model as the result)."""


def _in_json_string(template: str, position: int) -> bool:
    """Whether `position` of a body template is inside a JSON string literal."""
    inside = escaped = False
    for char in template[:position]:
        if escaped:
            escaped = False
        elif char == "\\" and inside:
            escaped = True
        elif char == '"':
            inside = not inside
    return inside


def fill_body(template: str, arguments: Mapping[str, Any]) -> str:
    """Each `{{param}}` as JSON: inside a string literal, the escaped text (a string's own
    text, any other value's JSON text), so the body keeps its shape; elsewhere a JSON value
    (null for a missing argument)."""

    def value(match: re.Match[str]) -> str:
        given = arguments.get(match.group(1))
        if _in_json_string(template, match.start()):
            text = given if isinstance(given, str) else json.dumps(given, ensure_ascii=False)
            return json.dumps(text, ensure_ascii=False)[1:-1]
        return json.dumps(given, ensure_ascii=False)

    return PLACEHOLDER.sub(value, template)


def fill_url(template: str, arguments: Mapping[str, Any]) -> str:
    """Each `{{param}}` percent-encoded. In the path, an argument must be a real segment: not
    missing or empty, not "." or ".." (which would climb out of the tool's path)."""
    path_end = template.find("?")
    if path_end < 0:
        path_end = len(template)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        given = arguments.get(name)
        text = "" if given is None else given if isinstance(given, str) else json.dumps(given)
        if match.start() < path_end and text.strip() in ("", ".", ".."):
            raise BadArgument(f"'{name}' must be given, and not '.' or '..'")
        return quote(text, safe="")

    return PLACEHOLDER.sub(value, template)


def parse_arguments(raw: str | None) -> dict[str, Any] | None:
    """The model's arguments (a JSON object as text); None when they are not one."""
    try:
        value = json.loads(raw or "{}")
    except (ValueError, RecursionError):  # nested past the parser's depth: not arguments
        return None
    return value if isinstance(value, dict) else None


async def call_tool(
    http: httpx.AsyncClient,
    tool: Tool,
    headers: Mapping[str, str],
    raw_arguments: str | None,
    seconds_left: float | None = None,
) -> ToolCall:
    """Run one call within its timeout (or `seconds_left`, if shorter); the outcome is always a
    result for the model, never an exception."""
    seconds = (
        tool.timeout_seconds if seconds_left is None else min(seconds_left, tool.timeout_seconds)
    )
    arguments = parse_arguments(raw_arguments)
    call = ToolCall(tool.name, arguments or {})
    started = time.perf_counter()
    try:
        if arguments is None:
            call.error = "the arguments were not a JSON object"
            return call
        url = fill_url(tool.url, arguments)
        content = None if tool.body is None else fill_body(tool.body, arguments)
        # Uncompressed: a compressed answer would be inflated before the size cap applies.
        sent = {"Accept-Encoding": "identity", **headers}
        if content is not None and not any(h.lower() == "content-type" for h in sent):
            sent["Content-Type"] = "application/json"
        request = http.build_request(
            tool.method,
            url,
            headers=sent,
            content=None if content is None else content.encode(),
            timeout=seconds,
        )
        async with asyncio.timeout(seconds):
            response = await http.send(request, stream=True)
            try:
                body = await _read_capped(response)
            finally:
                await response.aclose()
        call.status = response.status_code
        call.result = json.dumps({"status": response.status_code, "body": body}, ensure_ascii=False)
    except UrlNotAllowed as exc:
        call.error = f"the tool's address is not allowed ({exc.reason})"
    except BadArgument as exc:
        call.error = f"bad argument: {exc}"
    except UnicodeError:
        # (Not the exception's text: it would quote the string, a header's value included.)
        call.error = "the arguments or the headers could not be encoded"
    except (TimeoutError, httpx.TimeoutException):
        call.error = f"no answer within {seconds:g} s"
    except httpx.HTTPError as exc:
        call.error = f"the request failed ({type(exc).__name__})"
    finally:
        call.duration_ms = int((time.perf_counter() - started) * 1000)
        if call.error is not None:
            call.result = json.dumps({"error": call.error})
    return call


async def _read_capped(response: httpx.Response) -> str:
    """At most MAX_RESPONSE_BYTES of the body, inflated a bounded step at a time when the
    server compressed it anyway (a small bomb never becomes a large buffer)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    inflate = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(wbits=47)  # gzip or zlib framing, told by its header
    elif encoding not in ("", "identity"):
        return f"[a body in the {encoding[:20]!r} encoding, which is not read]"
    kept = bytearray()
    truncated = False
    async for chunk in response.aiter_raw():
        data = chunk
        if inflate is not None:
            try:
                data = inflate.decompress(chunk, MAX_RESPONSE_BYTES + 1 - len(kept))
            except zlib.error:
                return "[a compressed body that does not inflate]"
        kept += data
        if len(kept) > MAX_RESPONSE_BYTES or (inflate is not None and inflate.unconsumed_tail):
            truncated = True
            break
    text = bytes(kept[:MAX_RESPONSE_BYTES]).decode("utf-8", "replace")
    return text + (" [truncated]" if truncated else "")


class BuiltInTool(Protocol):
    """A tool the assistant brings itself (one of `BUILT_IN_NAMES`, e.g. ai/files.py's
    `send_file`): its definition for the model, and its call, whose outcome is always a result
    for the model (never an exception)."""

    @property
    def name(self) -> str: ...

    def spec(self) -> tuple[str, str, Mapping[str, Any]]: ...

    async def call(self, raw_arguments: str | None, seconds_left: float) -> ToolCall: ...


class ToolBox:
    """A reply's tools: their definitions for the model and their calls, logged in order."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        tools: Sequence[Tool],
        secrets: Secrets,
        built_ins: Sequence[BuiltInTool] = (),
    ) -> None:
        self._http = http
        self._tools = {t.name: t for t in tools}
        self._secrets = secrets
        # (A tenant's tool cannot take a built-in's name: parse_tools refuses it.)
        self._built_ins = {b.name: b for b in built_ins}
        self._deadline: float | None = None
        self.calls: list[ToolCall] = []

    def __bool__(self) -> bool:
        return bool(self._tools or self._built_ins)

    def specs(self) -> list[tuple[str, str, Mapping[str, Any]]]:
        return [(t.name, t.description, t.parameters) for t in self._tools.values()] + [
            b.spec() for b in self._built_ins.values()
        ]

    async def run_round(self, requested: Sequence[tuple[str, str | None]]) -> list[str]:
        """The results of one model turn's calls (name, raw arguments), in their order: run
        at once within what is left of the tools' budget; calls past `MAX_CALLS` or the budget
        are answered with an error, not made (and not logged)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + TOOLS_BUDGET_SECONDS
        left = self._deadline - time.monotonic()
        room = MAX_CALLS - len(self.calls)
        made = [self._one(name, raw, left) for name, raw in requested[: max(room, 0)]]
        calls = await asyncio.gather(*made) if left > 0 else []
        self.calls.extend(calls)
        results = [c.result for c in calls]
        refusal = (
            f"no more than {MAX_CALLS} tool calls in one answer"
            if left > 0
            else "no time left for tool calls in this answer"
        )
        return results + [json.dumps({"error": refusal})] * (len(requested) - len(results))

    async def _one(self, name: str, raw_arguments: str | None, seconds_left: float) -> ToolCall:
        built_in = self._built_ins.get(name)
        if built_in is not None:
            return await built_in.call(raw_arguments, seconds_left)
        tool = self._tools.get(name)
        if tool is None:
            call = ToolCall(name, parse_arguments(raw_arguments) or {}, error="no such tool")
            call.result = json.dumps({"error": f"there is no tool named {name[:64]!r}"})
            return call
        return await call_tool(
            self._http, tool, self._secrets.get(name, {}), raw_arguments, seconds_left
        )
