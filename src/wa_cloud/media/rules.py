"""Media rules: Meta's type and size table and the checks before anything is sent to Meta.

Meta refuses a wrong file only after the upload (131053), or worse, accepts it and the message
fails later; checking here gives the caller a 422 that names the problem and costs no Graph call.
The declared type is not trusted alone: the first bytes of the common formats are checked too.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from wa_cloud.errors import Unprocessable

KB: Final = 1024
MB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MediaRule:
    mime_types: frozenset[str]  # empty: any type (documents)
    max_bytes: int


# Meta's table (Cloud API media reference). Stickers: 100 KB static, 500 KB animated; we enforce
# the larger limit and leave the animated/static distinction to Meta.
RULES: Final[dict[str, MediaRule]] = {
    "audio": MediaRule(
        frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}), 16 * MB
    ),
    "image": MediaRule(frozenset({"image/jpeg", "image/png"}), 5 * MB),
    "video": MediaRule(frozenset({"video/mp4", "video/3gpp"}), 16 * MB),
    "document": MediaRule(frozenset(), 100 * MB),
    "sticker": MediaRule(frozenset({"image/webp"}), 500 * KB),
}
MEDIA_KINDS: Final = frozenset(RULES)
MAX_MEDIA_BYTES: Final = max(rule.max_bytes for rule in RULES.values())

# Names clients often use for a type Meta knows under another one.
_ALIASES: Final = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "audio/opus": "audio/ogg",
    "application/ogg": "audio/ogg",
}
GENERIC_TYPES: Final = frozenset({"", "application/octet-stream", "binary/octet-stream"})
# The ISO base media family (MP4, M4A, 3GP) shares one signature, the `ftyp` box.
_FTYP_FAMILY: Final = frozenset({"video/mp4", "video/3gpp", "audio/mp4", "audio/aac"})
# Types whose files always start with a signature: no signature means the bytes are not that.
_SIGNED: Final = frozenset(
    {"image/jpeg", "image/png", "image/webp", "audio/ogg", "audio/amr", "application/pdf"}
    | {"video/mp4", "video/3gpp", "audio/mp4"}
)
OPUS_ONLY: Final = (
    "OGG audio must use the Opus codec; send it with voice=true to have it converted."
)


def normalise_mime(mime_type: str | None) -> str:
    """`Image/JPG; q=1` -> `image/jpeg`: parameters dropped, lower case, common aliases."""
    bare = (mime_type or "").split(";")[0].strip().lower()
    return _ALIASES.get(bare, bare)


def sniff(content: bytes) -> str | None:
    """The type the first bytes prove, for the formats where that is cheap; None if unknown."""
    head = content[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head[4:8] == b"ftyp":
        return "video/3gpp" if head[8:11] in (b"3gp", b"3g2") else "video/mp4"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    if head.startswith(b"GIF8"):
        return "image/gif"
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    return None


def _compatible(declared: str, sniffed: str | None) -> bool:
    if sniffed is None:
        return declared not in _SIGNED
    if declared in _FTYP_FAMILY and sniffed in ("video/mp4", "video/3gpp"):
        return True
    return declared == sniffed


def rule_for(kind: str) -> MediaRule:
    rule = RULES.get(kind)
    if rule is None:
        raise Unprocessable(
            f"'{kind}' is not a media type; use one of {', '.join(sorted(RULES))}.",
            "unsupported_media_type",
        )
    return rule


def check_media(kind: str, mime_type: str | None, size: int, content: bytes) -> str:
    """Meta's media rules for a file of `size` bytes starting with `content`.

    Returns the MIME type to upload with (the declared one, normalised; the sniffed one when
    none or a generic one was declared). Raises `Unprocessable` with `unsupported_media_type`
    or `media_too_large`.
    """
    rule = rule_for(kind)
    if size <= 0:
        raise Unprocessable("The file is empty.", "unsupported_media_type")
    sniffed = sniff(content)
    declared = normalise_mime(mime_type)
    if declared in GENERIC_TYPES:
        declared = sniffed or ("application/octet-stream" if kind == "document" else "")
    if rule.mime_types and declared not in rule.mime_types:
        raise Unprocessable(_not_allowed(kind, declared or None, rule), "unsupported_media_type")
    if not _compatible(declared, sniffed):
        raise Unprocessable(_contradiction(declared, sniffed), "unsupported_media_type")
    if kind == "audio" and declared == "audio/ogg" and not _is_opus(content):
        raise Unprocessable(OPUS_ONLY, "unsupported_media_type")
    if size > rule.max_bytes:
        raise Unprocessable(
            f"The {kind} is {size} bytes; Meta accepts at most {rule.max_bytes} bytes "
            f"for {kind} media.",
            "media_too_large",
        )
    return declared


def _not_allowed(kind: str, declared: str | None, rule: MediaRule) -> str:
    allowed = ", ".join(sorted(rule.mime_types))
    if declared is None:
        return f"The file's type could not be recognised; {kind} media must be one of {allowed}."
    return f"{declared} is not accepted for {kind} media; use one of {allowed}."


def _contradiction(declared: str, sniffed: str | None) -> str:
    if sniffed is None:
        return f"The file was declared {declared} but its bytes are not {declared}."
    return f"The file was declared {declared} but its bytes are {sniffed}."


def _is_opus(content: bytes) -> bool:
    # Only Opus plays on WhatsApp; its identification header sits in the first OGG page.
    return b"OpusHead" in content[:512]


def sha256_matches(expected: str, digest: bytes) -> bool | None:
    """Whether `expected` names `digest`: Meta's webhooks give SHA-256 in base64, the media
    endpoint in hex. None when `expected` is neither (it cannot be checked)."""
    text = expected.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text) == digest
        except ValueError:
            pass
    try:
        decoded = base64.b64decode(text.replace("-", "+").replace("_", "/") + "==")
    except (binascii.Error, ValueError):
        return None
    return decoded == digest if len(decoded) == 32 else None
