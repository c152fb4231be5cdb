"""Meta's `X-Hub-Signature-256`: HMAC-SHA256 of the raw body with the app secret.

Meta's documentation says the signature is computed over an escaped-unicode form of the payload
(every non-ASCII UTF-16 code unit as a lowercase `\\uXXXX`), and client libraries have seen both
forms. We verify the raw bytes first and, only for non-ASCII bodies that fail, the escaped form.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from wa_cloud.errors import ApiError

_PREFIX = "sha256="
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


class SignatureMissing(ApiError):
    def __init__(self) -> None:
        super().__init__(401, "signature_missing", "X-Hub-Signature-256 header is required.")


class SignatureInvalid(ApiError):
    def __init__(self) -> None:
        super().__init__(403, "signature_invalid", "X-Hub-Signature-256 does not match the body.")


def sign(body: bytes, secret: str) -> str:
    """The header value Meta would send for `body` (used by the simulator and tests)."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _escape_code_unit(match: re.Match[str]) -> str:
    encoded = match.group().encode("utf-16-be")
    return "".join(
        f"\\u{int.from_bytes(encoded[i : i + 2], 'big'):04x}" for i in range(0, len(encoded), 2)
    )


def escaped_unicode(body: bytes) -> bytes:
    """The body with every non-ASCII character written as JSON `\\uXXXX` escapes."""
    return _NON_ASCII.sub(_escape_code_unit, body.decode("utf-8")).encode("ascii")


def verify(body: bytes, header: str | None, secret: str) -> None:
    """Raise `SignatureMissing` or `SignatureInvalid`; return quietly when the body is Meta's."""
    if not header:
        raise SignatureMissing()
    if not header.startswith(_PREFIX):
        raise SignatureInvalid()
    given = header[len(_PREFIX) :].strip().lower()
    key = secret.encode()
    if hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest(), given):
        return
    if not body.isascii():
        try:
            escaped = escaped_unicode(body)
        except UnicodeDecodeError:
            raise SignatureInvalid() from None
        if hmac.compare_digest(hmac.new(key, escaped, hashlib.sha256).hexdigest(), given):
            return
    raise SignatureInvalid()
