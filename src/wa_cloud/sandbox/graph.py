"""The one adapter every Graph endpoint goes through: version check, bearer token, body
parsing, Meta's error rendering, and the request log the control API shows."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wa_cloud import formdata
from wa_cloud.sandbox.errors import (
    GraphError,
    bad_param,
    invalid_token,
    no_permission,
    no_such_object,
)
from wa_cloud.sandbox.state import Grant, Number, SandboxState

VERSION = re.compile(r"v\d+\.\d+")
# Meta's largest upload is a 100 MB document; leave room for the multipart framing.
MAX_BODY_BYTES = 101 * 1024 * 1024
# Graph's forms are a media upload (`file`, `type`, `messaging_product`) or a few parameters.
FORM_LIMITS = formdata.FormLimits(
    max_body_bytes=MAX_BODY_BYTES,
    max_file_bytes=MAX_BODY_BYTES,
    max_parts=16,
    max_field_bytes=64 * 1024,
)


@dataclass(slots=True)
class GraphRequest:
    request: Request
    state: SandboxState
    token: str | None
    grant: Grant | None
    raw: bytes
    content_type: str

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)

    def body(self) -> dict[str, Any]:
        """The JSON object (or form fields) of the request; Meta's `(#100)` when unparsable."""
        parsed = parse_body(self.raw, self.content_type)
        if not isinstance(parsed, dict):
            raise bad_param("The request body must be a JSON object.")
        return parsed

    def number(self, phone_number_id: str) -> Number:
        number = self.state.numbers.get(phone_number_id)
        if number is None:
            raise no_such_object(phone_number_id, self.request.method)
        if self.grant is None or not self.grant.covers_number(number):
            raise no_permission(phone_number_id)
        return number

    def waba(self, waba_id: str) -> str:
        if not self.state.waba_exists(waba_id):
            raise no_such_object(waba_id, self.request.method)
        if self.grant is None or not self.grant.covers_waba(waba_id):
            raise no_permission(waba_id)
        return waba_id


Handler = Callable[[GraphRequest], Awaitable[dict[str, Any] | Response]]


def parse_body(raw: bytes, content_type: str) -> Any:
    if not raw.strip():
        return {}
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        # Graph takes the same parameters as form fields, with JSON-encoded objects as values.
        fields: dict[str, Any] = {}
        for key, value in parse_qsl(raw.decode("utf-8", errors="replace")):
            fields[key] = _maybe_json(value)
        return fields
    if formdata.is_multipart(content_type):
        try:
            parts = formdata.parse(raw, content_type, FORM_LIMITS)
        except formdata.FormError as exc:
            raise bad_param(exc.message) from None
        return {k: p.text for k, p in parts.items() if not p.filename}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_param("The request body is not valid JSON.") from None


def _maybe_json(value: str) -> Any:
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    # Graph also takes the token as a query parameter.
    return request.query_params.get("access_token") or None


def _log_body(raw: bytes, content_type: str) -> Any:
    try:
        if formdata.is_multipart(content_type):
            return formdata.summary(formdata.parse(raw, content_type, FORM_LIMITS))
        return parse_body(raw, content_type)
    except (GraphError, formdata.FormError):
        return {"unparsable_bytes": len(raw)}


def _log_headers(request: Request) -> dict[str, str]:
    return {
        key: ("***" if key == "authorization" else value) for key, value in request.headers.items()
    }


def graph(
    handler: Handler, *, authenticated: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap `handler` as a Starlette endpoint that behaves like a Graph API route."""

    async def endpoint(request: Request) -> Response:
        state: SandboxState = request.app.state.sandbox
        raw = b""
        content_type = request.headers.get("content-type", "")
        try:
            version = request.path_params.get("version")
            if version is not None and not VERSION.fullmatch(str(version)):
                raise GraphError(
                    2500,
                    f"Unknown path components: /{version}",
                    message=f"Unknown path components: /{version}",
                    status=400,
                )
            raw = await _read(request)
            delay = max(
                (t for part, t in state.latencies.items() if part in request.url.path), default=0
            )
            if delay:
                await asyncio.sleep(delay)
            token = bearer(request)
            grant = state.tokens.get(token) if token else None
            if authenticated:
                if token is None:
                    raise invalid_token(
                        "An active access token must be used to query this resource."
                    )
                if grant is None:
                    raise invalid_token()
            result = await handler(GraphRequest(request, state, token, grant, raw, content_type))
            response = result if isinstance(result, Response) else JSONResponse(result)
        except GraphError as exc:
            response = exc.response()
        state.requests.append(
            {
                "at": state.now(),
                "method": request.method,
                "path": request.url.path,
                "query": {k: v for k, v in request.query_params.items() if k != "access_token"},
                "headers": _log_headers(request),
                "body": _log_body(raw, content_type) if raw else None,
                "status": response.status_code,
            }
        )
        return response

    return endpoint


async def _read(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise GraphError(131053, "The request body is larger than any media Meta accepts.")
        chunks.append(chunk)
    return b"".join(chunks)
