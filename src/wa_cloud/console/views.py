"""What every console page shares: rendering with the console's headers, the wrapper that turns
errors into pages, signing in and out, and the live stream.

Pages are plain HTML forms (POST, then a redirect), so the console works without JavaScript
except for live updates: console.js refetches a page's `data-live` regions when the stream says
their number changed. No inline script or style anywhere, so the Content-Security-Policy can
forbid both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from wa_cloud.asgi import read_limited
from wa_cloud.console import session as sessions
from wa_cloud.console.live import HEARTBEAT_SECONDS, Change
from wa_cloud.errors import ApiError, BadRequest, RateLimited
from wa_cloud.pages import environment
from wa_cloud.state import AppState

logger = logging.getLogger(__name__)

_TEMPLATES = environment("wa_cloud.console")

HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
}
MAX_FORM_BYTES = 256 * 1024
MAX_FIELDS = 400

Page = Callable[[Request], Awaitable[Response]]


def render(name: str, **context: Any) -> str:
    return _TEMPLATES.get_template(name).render(**context)


def html(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A console page: `session` and `csrf` are in every template's context."""
    current: sessions.Session | None = getattr(request.state, "console_session", None)
    body = render(
        template,
        session=current,
        csrf=current.csrf if current else "",
        path=request.url.path,
        **context,
    )
    return HTMLResponse(body, status_code=status_code, headers=HEADERS)


def redirect(url: str) -> RedirectResponse:
    """After a form: see the result with a GET (303), never re-post it on reload."""
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def local_path(url: str | None, default: str = "/console/") -> str:
    """A `next` address: only a path of the console, never another site (open redirect) nor,
    through dot segments a browser resolves ("/console/../", "%2e%2e"), a page outside it."""
    if not url:
        return default
    parts = urlsplit(url)
    decoded = unquote(parts.path)
    if (
        parts.scheme
        or parts.netloc
        or not parts.path.startswith("/console/")
        or "\\" in url
        or "//" in decoded
        or any(segment in (".", "..") for segment in decoded.split("/"))
    ):
        return default
    return parts.path + (f"?{parts.query}" if parts.query else "")


def page(handler: Page) -> Page:
    """A console route: no session goes to the sign-in page; an API error becomes a page with
    the same status and message (404 for what is not the caller's, exactly as in the API)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except sessions.SignedOut:
            if request.method == "GET" and not request.headers.get("x-console-fragment"):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return redirect(f"/console/signin?next={quote(target)}")
            return html(request, "error.html", status_code=401, message="Sign in again.")
        except ApiError as exc:
            response = html(
                request, "error.html", status_code=exc.status, message=exc.message, code=exc.code
            )
            if isinstance(exc, RateLimited):  # e.g. every upload slot of the tenant's taken
                response.headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
            return response

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


async def form(request: Request) -> ImmutableMultiDict[str, str]:
    """A submitted urlencoded form, bounded like every body we read."""
    raw = await read_limited(request, MAX_FORM_BYTES)
    try:
        pairs = parse_qsl(
            raw.decode(), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The form is not valid.", "invalid_form") from None
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise BadRequest("The form holds a NUL character.", "invalid_form")
    return ImmutableMultiDict(pairs)


async def signed_form(request: Request, session: sessions.Session) -> ImmutableMultiDict[str, str]:
    """A state-changing form: its fields once the CSRF checks pass."""
    fields = await form(request)
    sessions.check_csrf(request, session, fields.get("csrf"))
    return fields


# Signing in and out ---------------------------------------------------------------------------
@page
async def home(request: Request) -> Response:
    _, session, _ = await sessions.current(request)
    return redirect("/console/tenants" if session.operator else "/console/inbox")


def signin_page(
    request: Request, template: str, status_code: int = 200, **context: Any
) -> Response:
    """A page with a sign-in form: its nonce goes in the form and in a short-lived cookie."""
    state: AppState = request.state.wa
    response = HTMLResponse("", status_code=status_code, headers=HEADERS)
    nonce = sessions.signin_nonce(state, response)
    response.body = render(
        template, session=None, csrf="", path=request.url.path, nonce=nonce, **context
    ).encode()
    response.headers["content-length"] = str(len(response.body))
    return response


@page
async def signin_form(request: Request) -> Response:
    next_url = local_path(request.query_params.get("next"))
    return signin_page(request, "signin.html", next=next_url, error=None)


@page
async def signin(request: Request) -> Response:
    state: AppState = request.state.wa
    fields = await form(request)
    next_url = local_path(fields.get("next"))
    sessions.check_signin_nonce(state, request, fields.get("nonce"))
    # Guessing tokens here costs what guessing API keys costs: one lookup in flight at a time.
    opened = await sessions.session_for_token(state, fields.get("token", ""))
    if opened is None:
        logger.info("console sign-in refused")
        error = "That is not a valid admin token or API key."
        return signin_page(request, "signin.html", 401, next=next_url, error=error)
    if opened.operator and next_url.startswith("/console/inbox"):
        next_url = "/console/"
    response = redirect(next_url)
    sessions.set_cookie(state, response, opened)
    response.delete_cookie(sessions.SIGNIN_COOKIE, path="/console")
    return response


@page
async def link_form(request: Request) -> Response:
    """The invitation's link: a button to continue, so a mail scanner fetching the link signs
    nobody in, and another site cannot sign a browser into its own account."""
    return signin_page(request, "link.html")


@page
async def link_signin(request: Request) -> Response:
    state: AppState = request.state.wa
    fields = await form(request)
    sessions.check_signin_nonce(state, request, fields.get("nonce"))
    opened = await sessions.session_for_link(state, request.path_params["token"])
    if opened is None:
        logger.info("console link refused")
        return html(
            request,
            "error.html",
            status_code=404,
            message="This link has expired or was replaced by a newer invitation.",
            code="not_found",
        )
    response = redirect("/console/inbox")
    sessions.set_cookie(state, response, opened)
    response.delete_cookie(sessions.SIGNIN_COOKIE, path="/console")
    return response


@page
async def signout(request: Request) -> Response:
    state: AppState = request.state.wa
    current = sessions.read_cookie(state, request)
    if current is not None:
        await signed_form(request, current)
        if not await sessions.sign_out(state, current):
            # This browser is signed out all the same; a copy of the cookie may still work.
            logger.warning("console sign-out not recorded: the database is unreachable")
    response = redirect("/console/signin")
    sessions.clear_cookie(response)
    return response


# Live updates ---------------------------------------------------------------------------------
async def _signed_in(request: Request) -> bool:
    try:
        await sessions.current(request)
    except sessions.SignedOut:
        return False
    return True


@page
async def live(request: Request) -> Response:
    """Server-Sent Events: `event: <kind>` and `data: <phone number id>` for each change of the
    caller's tenant (every tenant for the operator); a comment line keeps proxies from closing.
    The session is checked again at every heartbeat: a stream outlives no session (a revoked
    key, a newer invitation, a new admin token, the cookie's expiry). It ends with a refresh,
    so the page's regions find themselves signed out and the page goes to the sign-in."""
    state, session, _ = await sessions.current(request)
    hub = state.live
    if hub is None or not hub.has_room(session.tenant_id):
        return html(
            request, "error.html", status_code=503, message="Live updates are busy.", code="busy"
        )

    async def events() -> AsyncIterator[str]:
        async with hub.subscribe(session.tenant_id) as queue:
            if queue is None:  # others took the room since the check above
                return
            yield "retry: 3000\n\n"
            checked = time.monotonic()
            while True:
                change: Change | None = None
                with contextlib.suppress(TimeoutError):
                    change = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                if time.monotonic() - checked >= HEARTBEAT_SECONDS:
                    if not await _signed_in(request):
                        yield "event: refresh\ndata: \n\n"
                        return
                    checked = time.monotonic()
                if change is None:
                    yield ": ping\n\n"
                elif change.kind == "closed":
                    return
                else:
                    yield f"event: {change.kind}\ndata: {change.phone_number_id}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={**HEADERS, "x-accel-buffering": "no"},
    )
