"""Meta's `X-Hub-Signature-256`: HMAC-SHA256 of the raw body with the app secret.

Meta's documentation says the signature is computed over an escaped-unicode form of the payload
(every non-ASCII UTF-16 code unit as a lowercase `\\uXXXX`), and client libraries have seen both
forms. We verify the raw bytes first and, only for non-ASCII bodies that fail, the escaped form.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import operator
import re
from json.encoder import encode_basestring_ascii

from wa_cloud.errors import ApiError
from wa_cloud.ratelimit import KeyRateLimiter

_PREFIX = "sha256="
_NON_ASCII_RUNS = re.compile(r"([^\x00-\x7f]+)")
_UNQUOTE = operator.itemgetter(slice(1, -1))
# Characters escaped between two turns of the event loop: about 1.5 ms of the worst text.
_SLICE_CHARACTERS = 16 * 1024


class SignatureMissing(ApiError):
    def __init__(self) -> None:
        super().__init__(401, "signature_missing", "X-Hub-Signature-256 header is required.")


class SignatureInvalid(ApiError):
    def __init__(self) -> None:
        super().__init__(403, "signature_invalid", "X-Hub-Signature-256 does not match the body.")


def sign(body: bytes, secret: str) -> str:
    """The header value Meta would send for `body` (used by the simulator and tests)."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _escape(text: str) -> str:
    # Runs of non-ASCII through the json module's C escaper (lowercase hex, astral characters
    # as surrogate pairs, as Meta writes them), minus the quotes it adds; ASCII untouched.
    parts = _NON_ASCII_RUNS.split(text)
    parts[1::2] = map(_UNQUOTE, map(encode_basestring_ascii, parts[1::2]))
    return "".join(parts)


def escaped_unicode(body: bytes) -> bytes:
    """The body with every non-ASCII character written as JSON `\\uXXXX` escapes."""
    return _escape(body.decode("utf-8")).encode("ascii")


def _matches(body: bytes, given: str, key: bytes) -> bool:
    return hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest(), given)


def _given(header: str | None) -> str:
    if not header:
        raise SignatureMissing()
    if not header.isascii() or not header.startswith(_PREFIX):
        raise SignatureInvalid()  # compare_digest refuses non-ASCII text: a 500, not a 403
    return header[len(_PREFIX) :].strip().lower()


def verify(body: bytes, header: str | None, secret: str) -> None:
    """Raise `SignatureMissing` or `SignatureInvalid`; return quietly when the body is Meta's."""
    given, key = _given(header), secret.encode()
    if _matches(body, given, key):
        return
    if body.isascii():
        raise SignatureInvalid()
    try:
        escaped = escaped_unicode(body)
    except UnicodeDecodeError:
        raise SignatureInvalid() from None
    if not _matches(escaped, given, key):
        raise SignatureInvalid()


async def verify_off_loop(
    body: bytes,
    header: str | None,
    secret: str,
    budget: KeyRateLimiter,
    one_at_a_time: asyncio.Lock,
) -> None:
    """`verify` for the web process: the escaped-unicode fallback runs a slice at a time, the
    event loop serving other requests between slices (C code holds the interpreter, so a
    thread would not help), and only within the process's budget."""
    given, key = _given(header), secret.encode()
    if _matches(body, given, key):
        return
    if body.isascii() or budget.take(b"", cost=len(body)) is not None:
        raise SignatureInvalid()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureInvalid() from None
    digest = hmac.new(key, digestmod=hashlib.sha256)
    # One body at a time: several interleaved would put several slices between two turns of
    # every other request.
    async with one_at_a_time:
        for start in range(0, len(text), _SLICE_CHARACTERS):
            digest.update(_escape(text[start : start + _SLICE_CHARACTERS]).encode("ascii"))
            if len(text) > _SLICE_CHARACTERS:
                await asyncio.sleep(0)  # a millisecond or two a slice at most, then others
    if not hmac.compare_digest(digest.hexdigest(), given):
        raise SignatureInvalid()
