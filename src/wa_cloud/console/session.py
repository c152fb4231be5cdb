"""Who is signed in to the console: a signed, expiring, HttpOnly cookie, and CSRF checks.

The cookie holds how its holder signed in, never a secret: the operator (a digest of the admin
token, so changing `WA_ADMIN_TOKEN` ends every operator session), a business by API key (the
key's hash, so revoking the key ends its sessions within the key cache's seconds) or by the
signed link of its invitation (the link's generation, so a newer invitation ends them). It is
signed with `WA_SECRET_KEY` under a salt of its own and checked against the database on every
request, the way the API checks a bearer key.

Every form carries the session's CSRF token and every POST is also refused when the browser
says it comes from another origin; the cookie is SameSite=Strict besides. Signing in has no
session yet: its form carries a nonce that is also in a short-lived cookie (double submit).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit
from uuid import UUID

from itsdangerous import BadData
from starlette.requests import Request
from starlette.responses import Response

from wa_cloud.api.auth import Caller, caller_for_key, is_admin_token
from wa_cloud.db.pool import DATABASE_ERRORS
from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError, Forbidden, NotFound, RateLimited, Unauthorized
from wa_cloud.state import AppState
from wa_cloud.tenants.keys import hash_key
from wa_cloud.tenants.links import CONSOLE_SALT, open_link, signed_serializer

COOKIE = "wa_console"
SIGNIN_COOKIE = "wa_console_signin"
LIFETIME = timedelta(hours=12)
SIGNIN_LIFETIME = timedelta(minutes=30)
SALT = "console-session"
# A signed-out session is remembered this much past its cookie's lifetime: the cookie's age is
# read from the web process's clock, the record's expiry from PostgreSQL's.
SIGNOUT_CLOCK_MARGIN = timedelta(hours=1)
SIGNIN_SALT = "console-signin"
# Bigger than any cookie we sign: anything longer is junk, not worth a MAC.
MAX_COOKIE_LENGTH = 1024

Via = Literal["admin", "key", "link"]


@dataclass(frozen=True, slots=True)
class Session:
    via: Via
    # The operator has no tenant; a business session always has one.
    tenant_id: UUID | None
    # admin: digest of the admin token; key: the key's hash (hex); link: the link generation.
    ref: str
    csrf: str

    @property
    def operator(self) -> bool:
        return self.via == "admin"


@dataclass(frozen=True, slots=True)
class Business:
    """A business's signed-in session with its tenant, checked against the database."""

    session: Session
    caller: Caller

    @property
    def tenant_id(self) -> UUID:
        return self.caller.tenant_id


class SignedOut(ApiError):
    """No valid session: pages answer with a redirect to the sign-in page."""

    def __init__(self, message: str) -> None:
        super().__init__(401, "signed_out", message)


def admin_ref(token: str) -> str:
    return hashlib.sha256(b"console-operator:" + token.encode()).hexdigest()[:32]


def new_session(via: Via, tenant_id: UUID | None, ref: str) -> Session:
    return Session(via, tenant_id, ref, secrets.token_urlsafe(24))


def set_cookie(state: AppState, response: Response, session: Session) -> None:
    value = [session.via, str(session.tenant_id or ""), session.ref, session.csrf]
    _set_signed(state, response, COOKIE, SALT, value, LIFETIME)


def _set_signed(
    state: AppState, response: Response, name: str, salt: str, value: object, lifetime: timedelta
) -> None:
    """A console cookie: signed under its own salt, HttpOnly, SameSite=Strict, /console only."""
    response.set_cookie(
        name,
        str(signed_serializer(state.settings, salt=salt).dumps(value)),
        max_age=int(lifetime.total_seconds()),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=state.settings.base_url.startswith("https://"),
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")


def read_cookie(state: AppState, request: Request) -> Session | None:
    """What the cookie says, or None when it is missing, expired, tampered with or not ours."""
    raw = request.cookies.get(COOKIE, "")
    if not raw or len(raw) > MAX_COOKIE_LENGTH:
        return None
    try:
        via, tenant, ref, csrf = signed_serializer(state.settings, salt=SALT).loads(
            raw, max_age=int(LIFETIME.total_seconds())
        )
        if via not in ("admin", "key", "link") or not all(
            isinstance(v, str) for v in (tenant, ref, csrf)
        ):
            return None
        tenant_id = UUID(tenant) if tenant else None
    except (BadData, ValueError, TypeError):
        return None
    if (via == "admin") != (tenant_id is None):
        return None
    return Session(via, tenant_id, ref, csrf)


def _digest(session: Session) -> bytes:
    # The CSRF token is the session's own random id: a new one at every sign-in.
    return hashlib.sha256(b"console-session:" + session.csrf.encode()).digest()


async def sign_out(state: AppState, session: Session) -> bool:
    """End the session everywhere: a copy of its cookie is refused from now on, not only the
    one this browser deletes. False when the database could not record it."""
    keep = (LIFETIME + SIGNOUT_CLOCK_MARGIN).total_seconds()
    try:
        async with state.pool.acquire() as conn:
            await conn.execute(Q.sign_out_session, _digest(session), session.tenant_id, keep)
    except DATABASE_ERRORS:
        return False
    return True


async def current(request: Request) -> tuple[AppState, Session, Caller | None]:
    """The signed-in session, checked against what it was issued under and not signed out;
    SignedOut otherwise."""
    state: AppState = request.state.wa
    session = read_cookie(state, request)
    if session is None:
        raise SignedOut("Sign in to use the console.")
    async with state.pool.acquire() as conn:
        if await conn.fetchval(Q.session_signed_out, _digest(session)):
            raise SignedOut("This session was signed out.")
    request.state.console_session = session  # every page's sign-out form needs its CSRF token
    if session.via == "admin":
        expected = state.settings.admin_token or ""
        if not expected or not hmac.compare_digest(session.ref, admin_ref(expected)):
            raise SignedOut("The operator session has ended.")
        return state, session, None
    assert session.tenant_id is not None
    if session.via == "key":
        try:
            caller = await caller_for_key(state, bytes.fromhex(session.ref))
        except (Unauthorized, ValueError):
            raise SignedOut("The API key of this session was revoked.") from None
        if caller.tenant_id != session.tenant_id:
            raise SignedOut("The session does not match its key.")
        return state, session, caller
    async with state.pool.acquire() as conn:
        tenant = await conn.fetchrow(Q.page_tenant, session.tenant_id)
    if tenant is None or str(tenant["link_generation"]) != session.ref:
        raise SignedOut("The invitation link of this session was replaced.")
    return state, session, Caller(tenant_id=session.tenant_id, active=tenant["active"])


async def operator(request: Request) -> tuple[AppState, Session]:
    """An operator page: a business's session gets the same 404 as a page that is not there."""
    state, session, _ = await current(request)
    if not session.operator:
        raise NotFound()
    return state, session


async def business(request: Request) -> tuple[AppState, Business]:
    """A business page: the operator has no inbox of its own (404, as for a missing page)."""
    state, session, caller = await current(request)
    if caller is None:
        raise NotFound()
    return state, Business(session, caller)


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    origin = request.headers.get("origin")
    if origin is None:
        # Browsers send Origin on every POST from a page; its absence is a non-browser client,
        # which has no ambient cookie to abuse. Sec-Fetch-Site says the same where it is sent.
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    allowed = {f"{request.url.scheme}://{request.url.netloc}"}
    public_url = request.state.wa.settings.public_url
    if public_url:
        # Behind a PaaS's TLS proxy the request looks like plain http to us: the address the
        # deployment says it has (WA_PUBLIC_URL) is the origin browsers send.
        public = urlsplit(public_url)
        allowed.add(f"{public.scheme}://{public.netloc}")
    return origin in allowed


def check_csrf(request: Request, session: Session, token: str | None) -> None:
    """Every state-changing request: same origin and the session's token (form or header),
    then the session's share of the request rate (429 with Retry-After past it)."""
    given = token or request.headers.get("x-csrf-token") or ""
    if not same_origin(request) or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise Forbidden("The form expired or came from another site; reload and try again.", "csrf")
    state: AppState = request.state.wa
    wait = state.key_rates.take(_rate_key(session), time.monotonic())
    if wait is not None:
        raise RateLimited(wait)


def _rate_key(session: Session) -> bytes:
    """The bucket a session's writes count against: a key's own (what the console does with a
    key spends that key's rate, as the API would), else its tenant's, or the operator's."""
    if session.via == "key":
        with contextlib.suppress(ValueError):
            return bytes.fromhex(session.ref)
    return f"console:{session.via}:{session.tenant_id or ''}".encode()


# Signing in ---------------------------------------------------------------------------------
def signin_nonce(state: AppState, response: Response) -> str:
    """A nonce for the sign-in form, also set as a short-lived cookie (double submit)."""
    nonce = secrets.token_urlsafe(18)
    _set_signed(state, response, SIGNIN_COOKIE, SIGNIN_SALT, nonce, SIGNIN_LIFETIME)
    return nonce


def check_signin_nonce(state: AppState, request: Request, nonce: str | None) -> None:
    raw = request.cookies.get(SIGNIN_COOKIE, "")
    try:
        expected = signed_serializer(state.settings, salt=SIGNIN_SALT).loads(
            raw[:MAX_COOKIE_LENGTH], max_age=int(SIGNIN_LIFETIME.total_seconds())
        )
    except BadData:
        expected = None
    if (
        not same_origin(request)
        or not isinstance(expected, str)
        or not nonce
        or not hmac.compare_digest(nonce.encode(), expected.encode())
    ):
        raise Forbidden("The sign-in form expired or came from another site; try again.", "csrf")


async def session_for_token(state: AppState, token: str) -> Session | None:
    """Sign in with the admin token or an API key: the session it opens, or None."""
    token = token.strip()
    if not token:
        return None
    if is_admin_token(state, token):
        return new_session("admin", None, admin_ref(token))
    key_hash = hash_key(token)
    try:
        caller = await caller_for_key(state, key_hash)
    except Unauthorized:
        return None
    return new_session("key", caller.tenant_id, key_hash.hex())


async def session_for_link(state: AppState, token: str) -> Session | None:
    """Sign in with the signed link of an invitation: the session it opens, or None."""
    link = open_link(state.settings, token, salt=CONSOLE_SALT)
    if link is None:
        return None
    async with state.pool.acquire() as conn:
        tenant = await conn.fetchrow(Q.page_tenant, link.tenant_id)
    if tenant is None or tenant["link_generation"] != link.generation or not tenant["active"]:
        return None
    return new_session("link", link.tenant_id, str(link.generation))
