"""Encryption at rest for access tokens, PINs, app secrets and tenants' model keys.

AES-256-GCM with a key derived from `WA_SECRET_KEY` by HKDF. Every sealed value carries the id
of the key that sealed it (so the master key can be rotated) and is bound to where it is stored
(`context`, e.g. ``numbers.access_token:106540352242922``), so a ciphertext copied into another
row does not open.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from wa_cloud.errors import WaCloudError

_VERSION = b"\x01"
_NONCE_BYTES = 12
_KEY_ID_BYTES = 4


class SecretUnreadable(WaCloudError):
    """A sealed value cannot be opened: wrong key, wrong place, or tampered with."""


def _derive(master: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        master.encode()
    )


class _Key:
    __slots__ = ("aead", "key_id")

    def __init__(self, master: str) -> None:
        raw = _derive(master, b"wa-cloud/at-rest/v1")
        self.aead = AESGCM(raw)
        self.key_id = hashlib.sha256(raw).digest()[:_KEY_ID_BYTES]


class SecretBox:
    """Seals with the current key; opens with the current or any previous key."""

    def __init__(self, master_key: str, previous_keys: tuple[str, ...] = ()) -> None:
        if not master_key:
            raise ValueError("a master key is required")
        self._current = _Key(master_key)
        self._keys = {k.key_id: k for k in (self._current, *map(_Key, previous_keys))}

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self._current.key_id.hex()})"

    @property
    def key_id(self) -> str:
        return self._current.key_id.hex()

    def is_current(self, blob: bytes) -> bool:
        """Whether `blob` was sealed with the current key (rotation skips those)."""
        return blob[1 : 1 + _KEY_ID_BYTES] == self._current.key_id

    def seal(self, plaintext: str, *, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._current.aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _VERSION + self._current.key_id + nonce + sealed

    def open(self, blob: bytes, *, context: str) -> str:
        if len(blob) < 1 + _KEY_ID_BYTES + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
            raise SecretUnreadable("sealed value has an unknown format")
        key = self._keys.get(blob[1 : 1 + _KEY_ID_BYTES])
        if key is None:
            raise SecretUnreadable("sealed with a key this process does not have")
        nonce_end = 1 + _KEY_ID_BYTES + _NONCE_BYTES
        try:
            plain = key.aead.decrypt(
                blob[1 + _KEY_ID_BYTES : nonce_end], blob[nonce_end:], context.encode()
            )
        except InvalidTag:
            raise SecretUnreadable("sealed value does not open in this context") from None
        return plain.decode()
