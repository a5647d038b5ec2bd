"""Authenticated encryption of stored passwords (AES-256-GCM), with a key id beside each value.

A stored value is ``key_id (1 byte) || nonce (12 bytes) || ciphertext+tag``. The key id lets
``assign secrets rotate`` re-encrypt under a new key while values under older keys still decrypt.
Keys are derived from secret strings with HKDF-SHA256.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE = 12


class DecryptionError(ValueError):
    """A stored value could not be decrypted with any known key."""


def derive_key(secret: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"assign/passwords", info=b"aes-gcm"
    ).derive(secret.encode())


def key_id_of(secret: str) -> int:
    """A stable one-byte id for a secret (1..255), stored beside each value it encrypts."""
    digest = HKDF(algorithm=hashes.SHA256(), length=1, salt=b"assign/key-id", info=b"id").derive(
        secret.encode()
    )
    return digest[0] or 1


class Cipher:
    """Encrypts with the current secret; decrypts with the current or any older one."""

    def __init__(self, current: str, older: list[str] | None = None) -> None:
        self.key_id = key_id_of(current)
        self._current = AESGCM(derive_key(current))
        self._keys: dict[int, AESGCM] = {self.key_id: self._current}
        for secret in older or []:
            self._keys.setdefault(key_id_of(secret), AESGCM(derive_key(secret)))

    def encrypt(self, plaintext: str | None) -> bytes | None:
        return self.encrypt_many([plaintext])[0]

    def encrypt_many(self, plaintexts: Sequence[str | None]) -> list[bytes | None]:
        """``encrypt`` of each, the nonces from one read of the system's random source."""
        nonces = os.urandom(NONCE * len(plaintexts))
        prefix, seal = bytes([self.key_id]), self._current.encrypt
        out: list[bytes | None] = []
        for at, plaintext in enumerate(plaintexts):
            if plaintext is None:
                out.append(None)
                continue
            nonce = nonces[at * NONCE : (at + 1) * NONCE]
            out.append(prefix + nonce + seal(nonce, plaintext.encode(), None))
        return out

    def decrypt(self, stored: bytes | None) -> str | None:
        if stored is None:
            return None
        stored = bytes(stored)
        aead = self._keys.get(stored[0])
        if aead is None:
            raise DecryptionError(f"no key with id {stored[0]}")
        try:
            return aead.decrypt(stored[1 : 1 + NONCE], stored[1 + NONCE :], None).decode()
        except InvalidTag as exc:
            raise DecryptionError("stored value failed authentication") from exc

    def is_current(self, stored: bytes | None) -> bool:
        return stored is None or bytes(stored)[0] == self.key_id
