"""What Redis sees: keyed names and sealed values.

Every value is AES-256-GCM with a random 96-bit nonce and the full Redis key as
associated data, so a value copied under another key does not open. The layout
is ``version (1) | key id (4) | nonce (12) | ciphertext+tag``; the key id only
picks which key to try first.

Redis key names carry no account, project or user id in the clear: each name
is an HMAC-SHA256 of the ids under a naming key derived from an encryption
key. All keys of one account share that hash as their Redis Cluster hash tag
(``ns:{tag}:v``, ``ns:{tag}:l``), so they live in one slot.

Keys rotate without a flag day: the first key seals and names what is written;
every key opens, and names a place to look, so a fleet on ``[new, old]`` reads
what a fleet on ``[old]`` wrote.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pdsidecar.secret import Secret

VERSION: Final = 1
_NONCE: Final = 12
_HEADER: Final = 1 + 4 + _NONCE


class Unreadable(Exception):
    """A value that does not open under any key (tampered, moved, wrong key, old format)."""


@dataclass(frozen=True)
class _Key:
    aead: AESGCM
    key_id: bytes
    naming: bytes


class Keyring:
    def __init__(self, keys: Sequence[Secret]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._keys = tuple(_derive(k) for k in keys)

    def tags(self, *parts: str) -> tuple[str, ...]:
        """The hash tag of ``parts`` under each key, the writing key's first."""
        message = "\x1f".join(parts).encode()
        return tuple(
            hmac.new(k.naming, message, hashlib.sha256).hexdigest()[:32] for k in self._keys
        )

    def seal(self, name: bytes, plaintext: bytes) -> bytes:
        key = self._keys[0]
        nonce = os.urandom(_NONCE)
        header = bytes([VERSION]) + key.key_id + nonce
        return header + key.aead.encrypt(nonce, plaintext, name)

    def open(self, name: bytes, blob: bytes) -> bytes:
        if len(blob) < _HEADER + 16 or blob[0] != VERSION:
            raise Unreadable
        key_id, nonce, body = blob[1:5], blob[5:_HEADER], blob[_HEADER:]
        # The named key first, then the others (a key id is 4 bytes and may collide).
        for key in sorted(self._keys, key=lambda k: k.key_id != key_id):
            try:
                return key.aead.decrypt(nonce, body, name)
            except InvalidTag:
                continue
        raise Unreadable


def _derive(key: Secret) -> _Key:
    raw = base64.b64decode(key.reveal())
    key_id = hmac.new(raw, b"pdsidecar key id", hashlib.sha256).digest()[:4]
    naming = hmac.new(raw, b"pdsidecar key names", hashlib.sha256).digest()
    return _Key(AESGCM(raw), key_id, naming)
