"""API keys: random with a prefix, stored as a SHA-256 digest, compared in constant time."""

from __future__ import annotations

import hashlib

from assign.security import keys


def test_generate_key() -> None:
    made = {keys.generate_key() for _ in range(200)}
    assert len(made) == 200
    for key in made:
        assert key.startswith("asg_")
        assert len(key) == 4 + 43  # 32 random bytes, URL-safe base64 without padding
        assert key.isascii() and " " not in key


def test_hash_key() -> None:
    key = keys.generate_key()
    digest = keys.hash_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert key not in digest and key[4:] not in digest
    assert keys.hash_key(key) == digest
    assert keys.hash_key(key + "x") != digest


def test_hash_of_odd_input_does_not_fail() -> None:
    # a header may hold anything; hashing it must not raise
    assert len(keys.hash_key("\udcff\x00é")) == 64
    assert len(keys.hash_key("")) == 64


def test_same_key() -> None:
    key = keys.generate_key()
    stored = keys.hash_key(key)
    assert keys.same_key(key, stored)
    assert not keys.same_key(keys.generate_key(), stored)
    assert not keys.same_key(key[:-1], stored)
    assert not keys.same_key(key, stored.upper())
