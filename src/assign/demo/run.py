"""``assign demo``: start the service with its dispatcher, build a world, run a simulated fleet,
watch until the dispatcher has closed every campaign, then summarize.

Everything goes over HTTP with :mod:`assign.client`; the demo only watches what the service does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live

from assign.client import ApiError, AsyncAdminClient, AsyncAssignClient
from assign.client.types import Server
from assign.demo import service, view, world
from assign.demo.fleet import SimServer

CLOSED = {"completed", "failed", "canceled"}
REFRESH = 0.5


@dataclass(frozen=True)
class DemoConfig:
    links: int = 2000
    servers: int = 6
    accounts: int = 100
    fail_rate: float = 0.1
    task_seconds: float = 0.4  # mean simulated work per link
    cooldown_seconds: float = 0.25  # per posting account, between two dispatches
    kill_at: float = 0.3  # share of links done when one server dies
    timeout: float = 300.0
    database_url: str | None = None  # default: SQLite in a temporary directory
    port: int | None = None  # default: any free port
    seed: int | None = None
    live: bool = True

    def service_env(self, workdir: Path, admin_key: str) -> dict[str, str]:
        """Fast settings: dead servers noticed within seconds, retries after about a second."""
        return {
            "ASSIGN_DATABASE_URL": self.database_url or f"sqlite:///{workdir / 'assign.db'}",
            "ASSIGN_ADMIN_KEY": admin_key,
            "ASSIGN_SECRET_KEY": secrets.token_urlsafe(36),
            "ASSIGN_DISPATCH_INTERVAL": "0.2",
            "ASSIGN_SERVER_TIMEOUT_MINUTES": "0.1",  # 6 seconds without a heartbeat
            "ASSIGN_STALE_TIMEOUT_MINUTES": str(max(0.5, self.task_seconds * 10 / 60)),
            "ASSIGN_RETRY_BASE_SECONDS": "0.5",
            "ASSIGN_RETRY_MAX_SECONDS": "2",
            "ASSIGN_LOG_LEVEL": "WARNING",
        }


def main(config: DemoConfig, console: Console) -> view.Summary:
    """Run the demo and print its summary; the summary is also returned."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="assign-demo-")))
        admin_key = "demo-admin-" + secrets.token_urlsafe(24)
        env = config.service_env(workdir, admin_key)
        if config.database_url and not config.database_url.startswith("sqlite"):
            from assign.db.migrate import upgrade
            from assign.settings import normalize_database_url

            upgrade(normalize_database_url(config.database_url))
        console.print(f"[dim]starting assign serve on {env['ASSIGN_DATABASE_URL']} ...[/dim]")
        running = stack.enter_context(
            service.running_service(env=env, log_path=workdir / "serve.log", port=config.port)
        )
        console.print(f"[dim]service up at {running.url} (API docs at {running.url}/docs)[/dim]")
        summary = asyncio.run(Demo(config, running.url, admin_key, console).run())
    console.print(view.render_summary(summary))
    return summary


class Demo:
    def __init__(self, config: DemoConfig, url: str, admin_key: str, console: Console) -> None:
        self.config = config
        self.url = url
        self.admin_key = admin_key
        self.console = console
        self.rng = random.Random(config.seed)
        self.fleet: list[SimServer] = []
        self.victim: SimServer | None = None
        self.killed_at: float | None = None
        self.events: list[str] = []
        self.history: collections.deque[tuple[float, int]] = collections.deque(maxlen=8)
        self.peak = 0.0

    async def run(self) -> view.Summary:
        config = self.config
        async with AsyncAdminClient(self.url, self.admin_key) as admin:
            assign_server = await admin.create_server("demo-assign", service="assign")
            async with AsyncAssignClient(self.url, assign_server["api_key"]) as worker:
                cooldown = config.cooldown_seconds / 60
                per_day = config.links  # high enough never to stop a campaign for the day
                await admin.put_settings(
                    "rate_limit", {"max_posts_per_day": per_day, "cooldown_minutes": cooldown}
                )
                servers = await world.create_servers(admin, config.servers)
                self.fleet = [self._simulate(s) for s in servers]
                self.victim = max(
                    (s for s in self.fleet if not s.server["service_types"]),
                    key=lambda s: s.server["max_threads"],
                )
                stop = asyncio.Event()
                running = [asyncio.create_task(s.run(stop)) for s in self.fleet]
                try:
                    campaigns = await world.create_campaigns(
                        admin, links=config.links, accounts=config.accounts
                    )
                    started = time.monotonic()
                    for campaign in campaigns:
                        await world.create_links(worker, campaign, self.rng)
                    self.events.append(
                        f"{config.links} links created in {len(campaigns)} campaigns "
                        f"in {time.monotonic() - started:.1f}s"
                    )
                    frame, finished = await self._watch(admin, worker, campaigns, started)
                finally:
                    stop.set()
                    await asyncio.gather(*running, return_exceptions=True)
                elapsed = time.monotonic() - started
                return await self._summary(admin, worker, frame, finished, elapsed)

    def _simulate(self, server: Server) -> SimServer:
        return SimServer(
            server=server,
            base_url=self.url,
            task_seconds=self.config.task_seconds,
            fail_rate=self.config.fail_rate,
            rng=random.Random(self.rng.random()),
        )

    async def _watch(
        self,
        admin: AsyncAdminClient,
        worker: AsyncAssignClient,
        campaigns: list[world.Campaign],
        started: float,
    ) -> tuple[view.Frame, bool]:
        """Refresh the frame until every campaign is closed or the timeout passes."""
        deadline = started + self.config.timeout
        frame = await self._frame(admin, worker, campaigns, started)
        with self._display(frame) as update:
            while time.monotonic() < deadline:
                await asyncio.sleep(REFRESH)
                try:
                    frame = await self._frame(admin, worker, campaigns, started)
                except (ApiError, httpx.TransportError) as exc:
                    self.events.append(f"monitor: {exc}")
                    continue
                self._maybe_kill(frame)
                update(frame)
                if all(c.status in CLOSED for c in frame.campaigns):
                    return frame, True
        return frame, False

    @contextlib.contextmanager
    def _display(self, frame: view.Frame) -> Iterator[collections.abc.Callable[[view.Frame], None]]:
        if self.config.live and self.console.is_terminal:
            with Live(view.render(frame), console=self.console, refresh_per_second=4) as live:
                yield lambda f: live.update(view.render(f))
            return
        last = [0.0]

        def plain(f: view.Frame) -> None:  # a line every few seconds when not on a terminal
            if f.elapsed - last[0] >= 5:
                last[0] = f.elapsed
                done = sum(c.done for c in f.campaigns)
                self.console.print(
                    f"{f.elapsed:5.1f}s  {done}/{self.config.links} links done  "
                    f"{f.throughput_now:.0f} links/s  "
                    + " ".join(f"{k}={v}" for k, v in f.links.items())
                )

        yield plain

    async def _frame(
        self,
        admin: AsyncAdminClient,
        worker: AsyncAssignClient,
        campaigns: list[world.Campaign],
        started: float,
    ) -> view.Frame:
        # the campaigns' statuses first: a frame that shows them all closed then counts links at
        # least as late, so it never shows a closed campaign beside a link still being finished
        statuses = await asyncio.gather(*(admin.get_request(c.request["id"]) for c in campaigns))
        stats, servers, counters = await asyncio.gather(
            admin.stats(), admin.list_servers(service="tool"), admin.metrics()
        )
        counts = await asyncio.gather(*(worker.count_links(c.request["id"]) for c in campaigns))
        now = time.monotonic()
        per_campaign = [{x["status"]: x["count"] for x in n["counts"]} for n in counts]
        links = dict(sum((collections.Counter(c) for c in per_campaign), collections.Counter()))
        completed = links.get("completed", 0)
        rate = self._throughput(now, completed)
        rows = self._server_rows(servers, now)
        return view.Frame(
            elapsed=now - started,
            links=stats["links"],
            campaigns=[
                view.CampaignRow(
                    c.plan.name,
                    c.plan.service_type,
                    c.plan.priority,
                    c.accounts,
                    r["status"],
                    c.links,
                    {x["status"]: x["count"] for x in n["counts"]},
                )
                for c, r, n in zip(campaigns, statuses, counts, strict=True)
            ],
            servers=rows,
            throughput_now=rate,
            throughput_avg=completed / max(now - started, 1e-9),
            counters=counters,
            servers_by_state=stats["servers"],
            pacing=f"cooldown {self.config.cooldown_seconds:g}s per posting account",
            events=self.events,
        )

    def _throughput(self, now: float, completed: int) -> float:
        """Links completed per second over the kept history (now included); the peak follows."""
        self.history.append((now, completed))
        oldest = self.history[0]
        rate = (completed - oldest[1]) / (now - oldest[0]) if now > oldest[0] else 0.0
        self.peak = max(self.peak, rate)
        return rate

    def _server_rows(self, servers: list[Server], now: float) -> list[view.ServerRow]:
        """The tool servers as the frame shows them, with what each simulated one did; notes
        when the killed server is seen offline."""
        by_name = {s.name: s for s in self.fleet}
        rows = []
        for server in servers:
            sim = by_name.get(server["name"])
            rows.append(
                view.ServerRow(
                    server["name"], server["status"], server["active_tasks"],
                    server["max_threads"], server["priority"],
                    sim.tally.completed if sim else 0, sim.tally.failed if sim else 0,
                    bool(sim and sim.dead),
                    "entity, social only" if server["service_types"] else "",
                )
            )  # fmt: skip
            if (
                sim is not None
                and sim is self.victim
                and sim.dead
                and server["status"] == "offline"
            ):
                self._note_offline(now)
        return rows

    def _maybe_kill(self, frame: view.Frame) -> None:
        victim = self.victim
        if victim is None or victim.dead:
            return
        done = sum(c.done for c in frame.campaigns) / max(self.config.links, 1)
        if done >= self.config.kill_at and (victim.busy > 0 or done >= self.config.kill_at + 0.3):
            self.killed_at = time.monotonic()
            dropped = victim.kill()
            self.events.append(
                f"{victim.name} died at {frame.elapsed:.1f}s with {dropped} links running: "
                "no more heartbeats, no results"
            )

    def _note_offline(self, now: float) -> None:
        if self.killed_at is not None and not any("offline" in e for e in self.events):
            assert self.victim is not None
            self.events.append(
                f"dispatcher set {self.victim.name} offline {now - self.killed_at:.1f}s after it "
                "died and put its links back in the queue"
            )

    async def _summary(
        self,
        admin: AsyncAdminClient,
        worker: AsyncAssignClient,
        frame: view.Frame,
        finished: bool,
        elapsed: float,
    ) -> view.Summary:
        counters = await admin.metrics()
        links = frame.links
        victim = self.victim
        left = 0
        if victim is not None:
            left = len(
                await worker.list_links(
                    server_id=victim.server["id"], status="queued,running,connecting", limit=1000
                )
            )
        notes = []
        if not finished:
            notes.append(
                f"stopped after {self.config.timeout:.0f}s (--timeout) before every campaign closed"
            )
        completed = links.get("completed", 0)
        return view.Summary(
            finished=finished,
            elapsed=frame.elapsed if finished else elapsed,
            links=sum(c.total for c in frame.campaigns),
            completed=completed,
            canceled=links.get("canceled", 0),
            throughput=completed / max(frame.elapsed, 1e-9),
            peak_throughput=self.peak,
            retried=int(counters.get("assign_links_retried_total", 0)),
            exhausted=int(counters.get("assign_links_exhausted_total", 0)),
            rescued_lost=int(counters.get('assign_links_rescued_total{reason="server_lost"}', 0)),
            rescued_stale=int(counters.get('assign_links_rescued_total{reason="stale"}', 0)),
            held_back=int(counters.get("assign_links_held_back_total", 0)),
            dispatched=int(counters.get("assign_links_dispatched_total", 0)),
            abandoned=victim.tally.abandoned if victim else 0,
            dead_server=victim.name if victim and victim.dead else None,
            left_on_dead=left,
            campaigns={c.name: c.status for c in frame.campaigns},
            notes=notes,
        )
