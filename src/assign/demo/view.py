"""What the demo shows: a live frame of the fleet while it runs, and a summary at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

LINK_STATES = ("pending", "queued", "running", "failed", "completed", "canceled")
STATE_STYLES = {"pending": "yellow", "queued": "cyan", "running": "blue", "failed": "red",
                "completed": "green", "canceled": "magenta", "online": "green",
                "offline": "red", "maintenance": "yellow", "connecting": "cyan"}  # fmt: skip


@dataclass
class CampaignRow:
    name: str
    service_type: str
    priority: int
    accounts: int
    status: str
    total: int
    counts: dict[str, int]

    @property
    def done(self) -> int:
        return self.counts.get("completed", 0) + self.counts.get("canceled", 0)


@dataclass
class ServerRow:
    name: str
    status: str
    active_tasks: int
    max_threads: int
    priority: int
    completed: int
    failed: int
    dead: bool
    note: str = ""


@dataclass
class Frame:
    elapsed: float
    links: dict[str, int]
    campaigns: list[CampaignRow]
    servers: list[ServerRow]
    throughput_now: float
    throughput_avg: float
    counters: dict[str, float]
    servers_by_state: dict[str, int]
    pacing: str
    events: list[str] = field(default_factory=list)


def _state(status: str) -> Text:
    return Text(status, style=STATE_STYLES.get(status, ""))


def render(frame: Frame) -> RenderableType:
    parts: list[RenderableType] = [_head(frame), _link_states(frame), Text(""), _campaigns(frame),
                                   Text(""), _fleet(frame), _servers(frame), Text(""),
                                   _dispatcher(frame)]  # fmt: skip
    parts.extend(Text(event, style="italic yellow") for event in frame.events[-4:])
    return Panel(Group(*parts), border_style="blue")


def _head(frame: Frame) -> Text:
    return Text.assemble(
        ("Assign demo", "bold"),
        f"  {frame.elapsed:5.1f}s   ",
        ("throughput ", "dim"),
        (f"{frame.throughput_now:6.1f}", "bold green"),
        (" links/s now, ", "dim"),
        f"{frame.throughput_avg:.1f}",
        (" on average   ", "dim"),
        (frame.pacing, "dim"),
    )


def _link_states(frame: Frame) -> Text:
    states = Text("links  ")
    for state in LINK_STATES:
        states.append(f"{state} ", style=STATE_STYLES[state])
        states.append(f"{frame.links.get(state, 0):<7}", style="bold")
    return states


def _campaigns(frame: Frame) -> Table:
    campaigns = Table(box=None, expand=False, pad_edge=False)
    for column in ("campaign", "type", "prio", "accounts", "status", "progress", "done",
                   "pending", "in flight", "failed"):  # fmt: skip
        left = column in ("campaign", "progress")
        campaigns.add_column(column, justify="left" if left else "right", no_wrap=True)
    for c in frame.campaigns:
        in_flight = sum(c.counts.get(s, 0) for s in ("queued", "running", "connect", "connecting"))
        campaigns.add_row(
            c.name, c.service_type, str(c.priority), str(c.accounts), _state(c.status),
            ProgressBar(total=max(c.total, 1), completed=c.done, width=28),
            f"{c.done}/{c.total}", str(c.counts.get("pending", 0)), str(in_flight),
            str(c.counts.get("failed", 0)),
        )  # fmt: skip
    return campaigns


def _servers(frame: Frame) -> Table:
    servers = Table(box=None, expand=False, pad_edge=False)
    for column in ("server", "prio", "status", "load", "tasks", "completed", "failed", ""):
        servers.add_column(column, justify="left" if column in ("server", "load", "") else "right")
    for s in frame.servers:
        servers.add_row(
            s.name + (" ✝" if s.dead else ""), str(s.priority), _state(s.status),
            ProgressBar(total=max(s.max_threads, 1), completed=min(s.active_tasks, s.max_threads),
                        width=20, complete_style="blue"),
            f"{s.active_tasks}/{s.max_threads}", str(s.completed), str(s.failed),
            Text(s.note, style="dim"),
        )  # fmt: skip
    return servers


def _dispatcher(frame: Frame) -> Text:
    counter = frame.counters
    return Text.assemble(
        ("dispatcher  ", "bold"),
        f"dispatched {counter.get('assign_links_dispatched_total', 0):.0f}  ",
        f"retried {counter.get('assign_links_retried_total', 0):.0f}  ",
        f"rescued {counter.get('assign_links_rescued_total', 0):.0f}  ",
        f"held back by rate limits {counter.get('assign_links_held_back_total', 0):.0f}  ",
        f"exhausted {counter.get('assign_links_exhausted_total', 0):.0f}",
    )


def _fleet(frame: Frame) -> Text:
    fleet = Text("servers  ")
    for state in ("online", "offline", "maintenance"):
        if frame.servers_by_state.get(state):
            fleet.append(f"{state} ", style=STATE_STYLES[state])
            fleet.append(f"{frame.servers_by_state[state]}  ", style="bold")
    used, slots = (
        frame.servers_by_state.get("active_tasks"),
        frame.servers_by_state.get("max_threads"),
    )
    if used is not None and slots:
        fleet.append(f"slots in use {used}/{slots}", style="dim")
    return fleet


@dataclass
class Summary:
    finished: bool
    elapsed: float  # from the first link created to the last campaign closed
    links: int
    completed: int
    canceled: int
    throughput: float  # completed links per second
    peak_throughput: float
    retried: int
    exhausted: int
    rescued_lost: int  # taken back from the dead server (released or failed "server lost")
    rescued_stale: int
    held_back: int
    dispatched: int
    abandoned: int  # links the dead server was working on when it died
    dead_server: str | None
    left_on_dead: int  # links still on the dead server at the end (0 expected)
    campaigns: dict[str, str]
    requests_seen: int = 0
    notes: list[str] = field(default_factory=list)


def render_summary(s: Summary) -> RenderableType:
    table = Table(title="Assign demo: summary", show_header=False, title_style="bold")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    outcome = "every campaign closed by the dispatcher" if s.finished else "did not finish"
    rows = [
        ("result", outcome, ""),
        ("links", str(s.links), f"{s.completed} completed, {s.canceled} canceled (out of retries)"),
        ("time", f"{s.elapsed:.1f}s", "first link created -> last campaign closed"),
        ("throughput", f"{s.throughput:.1f} links/s", f"peak {s.peak_throughput:.0f} links/s"),
        ("dispatched", str(s.dispatched), "assignments by the dispatcher, retries included"),
        ("retried", str(s.retried), "failed links put back after their back-off"),
        ("exhausted", str(s.exhausted), "failed links out of retries, canceled"),
        ("rescued from dead server", str(s.rescued_lost),
         f"{s.dead_server or '-'} died with {s.abandoned} links running; {s.left_on_dead} left"),
        ("rescued from stale work", str(s.rescued_stale), "no result within the stale timeout"),
        ("held back by rate limits", str(s.held_back), "times a link waited for its account"),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    for name, status in s.campaigns.items():
        table.add_row(f"  {name}", _state(status), "")
    notes = [Text(note, style="yellow") for note in s.notes]
    return Group(table, *notes)
