"""What every use case needs: the database, settings, password cipher and clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from assign.clock import Clock
from assign.db.engine import Database
from assign.security.crypto import Cipher
from assign.settings import Settings


@dataclass
class Context:
    db: Database
    settings: Settings
    cipher: Cipher
    clock: Clock = field(default_factory=Clock)
