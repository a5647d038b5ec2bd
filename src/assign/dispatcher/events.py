"""What the dispatcher says in its log: one INFO line per tick that changed anything, one
WARNING per server lost, one INFO per change of leadership. Structured fields, no secret
(servers by id and name, links only counted)."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign import metrics
from assign.db.repositories import history as history_repo

log = logging.getLogger("assign.dispatcher")

#: TickReport fields that count changes, in step order (held_back changes nothing)
CHANGES = (
    "servers_lost", "released", "lost_failed", "stale_failed", "retried", "exhausted", "assigned",
    "started",
)  # fmt: skip


def tick_changes(report: Any) -> dict[str, Any]:
    """The counts of a tick that changed something ({} when nothing changed)."""
    counts = {name: getattr(report, name, 0) for name in CHANGES}
    # by plain status names: the JSON log lines take only str keys (not a StrEnum's)
    finished = {str(k): v for k, v in (getattr(report, "finished", {}) or {}).items()}
    if not any(counts.values()) and not finished:
        return {}
    return {**counts, "held_back": getattr(report, "held_back", 0), "finished": finished}


def log_tick(report: Any, *, seconds: float, full: bool) -> None:
    changes = tick_changes(report)
    if changes:
        log.info(
            "dispatcher tick",
            extra={**changes, "tick_ms": round(seconds * 1000, 1), "full_tick": full},
        )


async def describe_lost(
    conn: AsyncConnection,
    lost: Sequence[uuid.UUID],
    released: Sequence[Any],
    failed: Sequence[Any],
) -> list[dict[str, Any]]:
    """One entry per lost server: id, name, links released (queued) and failed (running)."""
    names = await history_repo.server_names(conn, lost)
    back = Counter(r.server_id for r in released)
    gone = Counter(r.server_id for r in failed)
    return [
        {
            "server_id": str(server_id),
            "server_name": names.get(server_id, ""),
            "links_released": back.get(server_id, 0),
            "links_failed": gone.get(server_id, 0),
        }
        for server_id in lost
    ]


def log_lost(entries: Sequence[dict[str, Any]]) -> None:
    metrics.servers_lost.inc(len(entries))
    for entry in entries:
        log.warning("server lost: no heartbeat", extra=dict(entry))


def log_leadership(holder: str, *, leader: bool) -> None:
    message = "dispatcher became leader" if leader else "dispatcher stopped leading"
    log.info(message, extra={"holder": holder, "leader": leader})
