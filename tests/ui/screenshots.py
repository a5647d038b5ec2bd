"""Screenshots of every console page, light and dark, into docs/console/*.png.

Run: ``PYTHONPATH=src python -m tests.ui.screenshots`` (needs Chromium, like the browser tests).
It starts ``assign serve`` on a scratch SQLite database, has a small fleet do some work through
the tool API, then visits each page in both colour schemes.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from tests.ui.conftest import ADMIN_KEY, Console, _start, chromium_path

OUT = Path(__file__).resolve().parents[2] / "docs" / "console"


def populate(console: Console) -> dict[str, str]:
    """Servers that heartbeat and work, requests with links in every state, accounts."""
    rnd = random.Random(7)
    group = console.request(name="Spring launch")["id"]
    requests = [
        console.request(name=n, priority=p)
        for n, p in (("Podcast outreach", 2), ("Entity stack Q4", 1), ("Blog network", 0))
    ]
    for i in range(12):
        console.post(
            "/accounts",
            {
                "group_id": group,
                "email": f"poster{i}@example.com",
                "username": f"poster{i}",
                "password": "not-shown",
            },
        )
    for r in requests:
        for start in range(0, 60, 20):
            console.links(
                r["id"],
                20,
                email=f"poster{start // 20 + requests.index(r) * 3}@example.com",
                site_name="news.example",
            )
    servers = [
        console.server(name=f"tool-{i}", max_threads=6, priority=i % 2, service_types=[])
        for i in range(1, 5)
    ]
    console.server(name="tool-spare", status="maintenance", max_threads=4)
    console.post(
        "/settings/rate_limit",
        {"settings": {"max_posts_per_day": 40, "cooldown_minutes": 0}},
        status=200,
    ) if False else console.api.put(
        "/settings/rate_limit", json={"settings": {"max_posts_per_day": 40, "cooldown_minutes": 0}}
    )
    for _ in range(6):
        for s in servers:
            tool = {"X-API-Key": s["api_key"]}
            httpx.post(console.url + "/api/v1/tool/heartbeat", json={}, headers=tool)
        time.sleep(1.5)
        for s in servers:
            tool = {"X-API-Key": s["api_key"]}
            claimed = httpx.post(
                console.url + "/api/v1/tool/links/claim", json={"limit": 3}, headers=tool
            ).json()["data"]
            for link in claimed[:2]:
                ok = rnd.random() < 0.8
                body = (
                    {"status": "completed", "profile_url": "https://news.example/p/1"}
                    if ok
                    else {"status": "failed", "error": "captcha not solved"}
                )
                httpx.put(
                    console.url + f"/api/v1/tool/links/{link['id']}/result", json=body, headers=tool
                )
    return {"request": requests[0]["id"], "server": servers[0]["id"]}


def main() -> None:
    assert chromium_path(), "Chromium is needed"
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = _start(f"sqlite+aiosqlite:///{tmp}/assign.db", Path(tmp))
        console = next(run)
        try:
            ids = populate(console)
            link = httpx.get(console.url + "/api/v1/admin/stats", headers={"X-API-Key": ADMIN_KEY})
            del link
            pages = {
                "login": "/ui/login", "overview": "/ui/overview", "servers": "/ui/servers",
                "server": f"/ui/servers/{ids['server']}", "requests": "/ui/requests",
                "request": f"/ui/requests/{ids['request']}", "links": "/ui/links",
                "accounts": "/ui/accounts", "settings": "/ui/settings",
            }  # fmt: skip
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
                for scheme in ("light", "dark"):
                    ctx = browser.new_context(
                        color_scheme=scheme, viewport={"width": 1360, "height": 860}
                    )
                    page = ctx.new_page()
                    page.goto(console.url + "/ui/login")
                    page.screenshot(path=str(OUT / f"login-{scheme}.png"))
                    page.get_by_label("Admin key").fill(ADMIN_KEY)
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_url("**/overview")
                    for name, path in pages.items():
                        if name == "login":
                            continue
                        page.goto(console.url + path)
                        page.wait_for_timeout(400)
                        page.screenshot(path=str(OUT / f"{name}-{scheme}.png"), full_page=False)
                    page.goto(console.url + "/ui/links?status=failed")
                    page.get_by_label("Select all matching").check()
                    page.get_by_role("button", name="Retry", exact=True).click()
                    page.screenshot(path=str(OUT / f"confirm-{scheme}.png"))
                    page.goto(console.url + "/ui/links")
                    page.locator("tbody a[href*='/ui/links/']").first.click()
                    page.screenshot(path=str(OUT / f"link-{scheme}.png"))
                    ctx.close()
                browser.close()
        finally:
            run.close()


if __name__ == "__main__":
    main()
