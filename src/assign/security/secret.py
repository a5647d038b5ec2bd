"""Where the password-encryption secret comes from."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from assign.security.crypto import Cipher
from assign.settings import Settings


class MissingSecret(RuntimeError):
    pass


def secret_file(settings: Settings) -> Path | None:
    path = settings.sqlite_path
    return None if path is None else path.with_name(path.name + ".secret")


def resolve_secret(settings: Settings) -> str:
    """``ASSIGN_SECRET_KEY``; on SQLite without it, a secret generated once beside the database."""
    if settings.secret_key:
        return settings.secret_key
    path = secret_file(settings)
    if path is None:
        raise MissingSecret(
            "ASSIGN_SECRET_KEY is required with PostgreSQL (any string of 32+ characters); "
            "it encrypts stored passwords"
        )
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def make_cipher(settings: Settings) -> Cipher:
    return Cipher(resolve_secret(settings), older=settings.old_secret_list)
