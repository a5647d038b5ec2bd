"""Browser tests of the console: a real ``assign serve`` on a free 127.0.0.1 port (SQLite, and
PostgreSQL marked ``postgres``), driven by Debian's Chromium through Playwright.

Without Chromium the tests skip with a message saying so, unless ``ASSIGN_TEST_REQUIRE_BROWSER=1``
(CI), where a skipped browser test is a failure (see ``tests/conftest.py``). Playwright never
downloads a browser here: it launches the system's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from assign.db.migrate import upgrade
from tests.conftest import PG_ADMIN_URL, PG_SKIP, _admin_execute, _with_database
from tests.integration.procs import assign_env, free_port

ADMIN_KEY = "asg_console-test-admin-key-" + "k" * 20
CHROMIUM_CANDIDATES = (
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
)
BROWSER_SKIP = "Chromium not found (apt-get install chromium): the console's browser tests need it"
STARTUP = 60.0


def chromium_path() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    return found


@dataclass
class Console:
    """A running Assign: its base URL, database and an admin API client."""

    url: str
    database_url: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    api: httpx.Client = field(init=False)
    _n: int = 0

    def __post_init__(self) -> None:
        self.api = httpx.Client(
            base_url=self.url + "/api/v1/admin", headers={"X-API-Key": ADMIN_KEY}, timeout=30
        )

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{uuid.uuid4().hex[:6]}-{self._n}"

    def post(self, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = self.api.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()  # type: ignore[no-any-return]

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.api.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def server(self, **values: Any) -> dict[str, Any]:
        # podcast only: the running dispatcher never places the tests' entity links on it
        body = {"name": self.name("tool"), "service": "tool", "max_threads": 4,
                "service_types": ["podcast"], **values}  # fmt: skip
        return self.post("/servers", body)["data"]

    def request(self, **values: Any) -> dict[str, Any]:
        return self.post(
            "/requests", {"service_type": "entity", "name": self.name("campaign"), **values}
        )["data"]

    def links(self, request_id: str, n: int, **values: Any) -> None:
        """``n`` links of a request, through the worker API (as an assign service creates them)."""
        if not hasattr(self, "_worker_key"):
            self._worker_key = self.server(service="assign", name=self.name("assign"))["api_key"]
        items = [{"request_id": request_id, "service_type": "entity", **values} for _ in range(n)]
        response = httpx.post(
            self.url + "/api/v1/worker/links/bulk", json={"links": items},
            headers={"X-API-Key": self._worker_key}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 200, response.text

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "assign", *args], env=self.env, capture_output=True, check=True
        )
        return done.stdout.decode().strip()


def _start(database_url: str, tmp: Path) -> Iterator[Console]:
    port = free_port(range(8420, 8480))
    env = assign_env(
        database_url, admin_key=ADMIN_KEY, dispatch_interval=1, log_json="false",
        retry_base_seconds=3600,
    )  # fmt: skip
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "assign", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(
                "assign serve did not start: " + (tmp / "serve.log").read_text()[-2000:]
            )
        time.sleep(0.2)
    console = Console(url, database_url, process, env)
    try:
        yield console
    finally:
        console.api.close()
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    """A running ``assign serve`` (API, dispatcher and console) on a database of its own."""
    if chromium_path() is None:
        pytest.skip(BROWSER_SKIP)
    tmp = tmp_path_factory.mktemp("console")
    if request.param == "sqlite":
        yield from _start(f"sqlite+aiosqlite:///{tmp / 'assign.db'}", tmp)
        return
    if PG_ADMIN_URL is None:
        pytest.skip(PG_SKIP)
    name = f"assign_ui_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = _with_database(PG_ADMIN_URL, name)
    aside(lambda: asyncio.run(_admin_execute([f'CREATE DATABASE "{name}"'])))
    try:
        aside(lambda: upgrade(url))
        yield from _start(url, tmp)
    finally:
        aside(
            lambda: asyncio.run(_admin_execute([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))
        )


def aside(work: Callable[[], object]) -> None:
    """Run ``work`` in a thread of its own: Playwright's event loop runs in this one."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(work).result()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module: Playwright's loop runs in this thread while it lives, so
    it must end before other modules' fixtures run their own (``asyncio.run``)."""
    path = chromium_path()
    if path is None:
        pytest.skip(BROWSER_SKIP)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@dataclass
class Visit:
    """A browser page and every URL it asked for."""

    page: Any
    requested: list[str]
    console: Console

    def open(self, path: str) -> Any:
        return self.page.goto(self.console.url + path)

    def sign_in(self, key: str = ADMIN_KEY) -> None:
        self.open("/ui/login")
        self.page.get_by_label("Admin key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/ui/overview")


def new_visit(browser: Any, console: Console, color_scheme: str = "light") -> Iterator[Visit]:
    context = browser.new_context(
        color_scheme=color_scheme, viewport={"width": 1360, "height": 900}
    )
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield Visit(page, requested, console)
    finally:
        context.close()
    own = urlsplit(console.url).netloc
    foreign = [
        u
        for u in requested
        if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != own
    ]
    assert not foreign, f"the browser asked another host: {foreign}"
    assert not errors, f"scripts failed in the page: {errors}"


@pytest.fixture
def visit(browser: Any, console: Console) -> Iterator[Visit]:
    """A fresh browser context on the console; at the end, no request went to another host and
    no script failed."""
    yield from new_visit(browser, console)
