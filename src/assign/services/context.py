"""What every use case needs: the database, settings, password cipher and clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from assign.clock import Clock
from assign.db.engine import Database
from assign.security.crypto import Cipher
from assign.services.batching import Batches
from assign.services.keys import KeyCache
from assign.services.wake import Hub
from assign.settings import Settings


@dataclass
class Context:
    db: Database
    settings: Settings
    cipher: Cipher
    clock: Clock = field(default_factory=Clock)
    #: set when there may be new work for the dispatcher (see assign.dispatcher.wake)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: keys this process found lately, by digest (see assign.services.keys)
    known_keys: KeyCache = field(default_factory=lambda: KeyCache(0))
    #: claims waiting in this process, and what wakes them (see assign.services.wake)
    hub: Hub = field(default_factory=Hub)
    #: single results of each server (and way of applying them), applied together while one
    #: is in flight (see
    #: assign.services.batching and assign.services.tool.report_result)
    result_batches: Batches[Any, Any, Any] = field(
        default_factory=lambda: Batches(limit=1000, identity=lambda report: report.link_id)
    )
