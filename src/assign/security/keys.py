"""API keys: random, shown once, stored only as a SHA-256 digest, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "asg_"


def generate_key() -> str:
    """A new API key: a recognizable prefix and 256 bits of randomness."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key (hex SHA-256). Keys carry 256 bits of entropy, so no salt is needed."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def same_key(key: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), expected_hash)
