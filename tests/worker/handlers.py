"""Handlers the worker tests run, ``assign worker tests.worker.handlers:FUNCTION`` included."""

from __future__ import annotations

import asyncio
import os
import time

from assign.client.types import ClaimedLink
from assign.worker import Result


def slow(link: ClaimedLink) -> Result:
    """Holds each link a while (``ASSIGN_TEST_HOLD_SECONDS``), then completes it."""
    time.sleep(float(os.environ.get("ASSIGN_TEST_HOLD_SECONDS", "1")))
    return Result(profile_url=f"https://{link['site_name']}/u/1")


async def quick(link: ClaimedLink) -> Result:
    await asyncio.sleep(0)
    return Result(post_url=f"https://{link['site_name']}/p/1")
