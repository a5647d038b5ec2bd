"""The console in a real browser: sign-in, every page, every action with its confirmation
(checked through the API afterwards), the live Overview, CSRF, read-only keys, local assets."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.ui.conftest import ADMIN_KEY, Console, Visit

pytestmark = pytest.mark.browser
ACTIONS = {"Set maintenance", "Set online", "Delete", "Complete", "Connect", "Retry failed",
           "Cancel", "Retry", "Save"}  # fmt: skip
PAGES = ("Overview", "Servers", "Requests", "Links", "Accounts", "Settings")


def expect(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def csrf(visit: Visit) -> str:
    return visit.page.locator('input[name="csrf_token"]').first.input_value()  # type: ignore[no-any-return]


def confirm(visit: Visit, action: str, question: str) -> None:
    """On the confirmation page: its question names the action, then press the action's button."""
    heading = visit.page.get_by_role("heading", level=1)
    assert re.search(question, heading.inner_text()), heading.inner_text()
    visit.page.get_by_role("button", name=action, exact=True).click()
    visit.page.wait_for_load_state()


def test_sign_in_and_sign_out(visit: Visit, console: Console) -> None:
    page = visit.page
    visit.open("/ui/servers")
    assert page.url.endswith("/ui/login")
    page.get_by_label("Admin key").fill("asg_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    assert "Invalid admin key" in page.content()

    visit.sign_in()
    cookie = next(c for c in page.context.cookies() if c["name"] == "assign_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN_KEY not in cookie["value"] and ADMIN_KEY not in page.content()
    jar = {"assign_session": cookie["value"]}
    assert httpx.get(console.url + "/ui/servers", cookies=jar).status_code == 200

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login")
    # the old cookie no longer works: the session ended on the server
    again = httpx.get(console.url + "/ui/servers", cookies=jar)
    assert again.status_code == 303 and again.headers["location"].endswith("/ui/login")


def test_every_page_has_its_link_and_heading(visit: Visit, console: Console) -> None:
    console.server()
    request = console.request()
    console.links(request["id"], 3, email="reader@example.com")
    console.post(
        "/accounts",
        {"group_id": request["id"], "email": "reader@example.com", "password": "s3cret-pw"},
    )
    visit.sign_in()
    for name in PAGES:
        visit.page.get_by_role("navigation").get_by_role("link", name=name, exact=True).click()
        visit.page.wait_for_load_state()
        assert visit.page.get_by_role("heading", level=1).inner_text() == name
        assert visit.page.locator("table th").count() > 0
    assert "s3cret-pw" not in visit.page.content()
    # a request's, a server's and a link's own pages
    visit.open("/ui/requests")
    visit.page.get_by_role("link", name=request["name"]).click()
    assert visit.page.get_by_role("heading", level=1).inner_text() == f"Request {request['name']}"
    visit.page.locator("table a[href*='/ui/links/']").first.click()
    assert visit.page.get_by_role("heading", level=1).inner_text().startswith("Link ")
    assert visit.page.get_by_role("heading", name="Attempts").is_visible()
    # a pending link says why it waits, by the dispatcher's rules (no server takes entity links)
    why = visit.page.locator("#why")
    assert why.get_by_role("heading", name="Why it is waiting").is_visible()
    assert re.search(r"no_server_for_service_type|no_live_server", why.inner_text())


def test_overview_updates_itself_and_pauses(visit: Visit, console: Console) -> None:
    visit.sign_in()
    page = visit.page
    page.evaluate("window.notReloaded = true")
    cell = page.locator(".card", has_text="Requests by status").locator('td[data-status="pending"]')

    def pending() -> int:
        return int(cell.inner_text().replace(",", ""))

    before = pending()
    # the dispatcher running in assign serve shows itself within a tick or two
    leader = page.locator("#leader")
    expect(lambda: leader.inner_text() != "none yet", 12, "the dispatcher's leader")
    assert re.match(r"\d{4}-\d\d-\d\dT", page.locator("#last-tick").inner_text())
    console.request()
    expect(lambda: pending() == before + 1, 12, "the Overview to show the new request")
    assert page.evaluate("window.notReloaded") is True

    page.get_by_role("button", name="Pause updates").click()
    assert page.get_by_role("button", name="Resume updates").is_visible()
    console.request()
    time.sleep(6.5)
    assert pending() == before + 1
    page.get_by_role("button", name="Resume updates").click()
    expect(lambda: pending() == before + 2, 12, "updates to resume")
    assert page.evaluate("window.notReloaded") is True


def test_server_actions_with_confirmation(visit: Visit, console: Console) -> None:
    server = console.server()
    visit.sign_in()
    row = lambda: visit.page.locator("tr", has_text=server["name"])  # noqa: E731
    visit.open("/ui/servers")
    row().get_by_role("button", name="Set maintenance").click()
    confirm(visit, "Set maintenance", f"Set maintenance on server {server['name']}")
    assert console.get(f"/servers/{server['id']}")["data"]["status"] == "maintenance"
    assert "is maintenance" in visit.page.content()

    visit.open("/ui/servers")
    row().get_by_role("button", name="Set online").click()
    visit.page.get_by_role("link", name="Back").click()  # changing one's mind changes nothing
    assert console.get(f"/servers/{server['id']}")["data"]["status"] == "maintenance"
    row().get_by_role("button", name="Set online").click()
    confirm(visit, "Set online", f"Set online on server {server['name']}")
    assert console.get(f"/servers/{server['id']}")["data"]["status"] == "online"

    visit.open(f"/ui/servers/{server['id']}")
    assert visit.page.get_by_role("heading", name="Links in flight").is_visible()
    visit.page.get_by_role("button", name="Delete").click()
    confirm(visit, "Delete", f"Delete server {server['name']}")
    assert console.api.get(f"/servers/{server['id']}").status_code == 404


def _failed_links(console: Console, request_id: str, n: int) -> list[str]:
    """``n`` links of the request placed on a server, claimed and reported failed."""
    server = console.server(max_threads=n)
    console.links(request_id, n, server_id=server["id"])
    tool = {"X-API-Key": server["api_key"]}
    claimed = httpx.post(
        console.url + "/api/v1/tool/links/claim", json={"limit": n}, headers=tool
    ).json()["data"]
    for link in claimed:
        result = {"status": "failed", "error": "captcha not solved"}
        done = httpx.put(
            console.url + f"/api/v1/tool/links/{link['id']}/result", json=result, headers=tool
        )
        assert done.status_code == 200, done.text
    return [link["id"] for link in claimed]


def _request_action(visit: Visit, request: dict[str, Any], action: str, question: str) -> None:
    visit.open(f"/ui/requests/{request['id']}")
    visit.page.get_by_role("button", name=action, exact=True).click()
    confirm(visit, action, question)


def test_request_actions_with_confirmation(visit: Visit, console: Console) -> None:
    visit.sign_in()
    first = console.request()
    console.links(first["id"], 2)
    _request_action(visit, first, "Complete", f"Complete request {first['name']}")
    assert console.get(f"/requests/{first['id']}")["data"]["status"] == "completed"

    second = console.request()
    _request_action(visit, second, "Connect", f"Connect request {second['name']}")
    assert console.get(f"/requests/{second['id']}")["data"]["status"] == "connecting"

    third = console.request()
    ids = _failed_links(console, third["id"], 2)
    _request_action(
        visit, third, "Retry failed", f"Retry failed links of request {third['name']}: 2 failed"
    )
    assert "Retried 2 links" in visit.page.content()
    pending = console.get("/stats")  # the links are back in the queue
    assert pending["links"].get("pending", 0) >= 2
    visit.open(f"/ui/links/{ids[0]}")
    assert "1 of 3" in visit.page.content()  # retry_count 1 of max_retries 3

    _request_action(visit, third, "Cancel", f"Cancel request {third['name']}")
    assert console.get(f"/requests/{third['id']}")["data"]["status"] == "canceled"


def _link_statuses(console: Console, request_id: str) -> dict[str, int]:
    worker = console._worker_key
    counted = httpx.get(
        console.url + f"/api/v1/worker/requests/{request_id}/links/count",
        headers={"X-API-Key": worker},
    ).json()
    return {c["status"]: c["count"] for c in counted["counts"]}


def test_links_filter_pages_and_bulk_actions(visit: Visit, console: Console) -> None:
    request = console.request()
    console.links(request["id"], 57, email="bulk@example.com")
    visit.sign_in()
    page = visit.page
    visit.open("/ui/links")
    page.get_by_label("Request").fill(request["id"])
    page.get_by_label("Status").select_option("pending")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert f"request_id={request['id']}" in page.url and "status=pending" in page.url
    assert page.locator("tbody tr").count() == 50
    page.get_by_role("link", name="Next").click()
    page.wait_for_load_state()
    assert "after=" in page.url and page.locator("tbody tr").count() == 7
    assert page.get_by_role("link", name="Next").count() == 0

    # two selected links, then every link matching the filter
    boxes = page.locator('tbody input[name="link_id"]')
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.get_by_role("button", name="Cancel", exact=True).click()
    confirm(page_visit := visit, "Cancel", r"Cancel 2 links selected\?")
    assert _link_statuses(console, request["id"]) == {"canceled": 2, "pending": 55}
    assert "Canceled 2 links" in page_visit.page.content()

    visit.open(f"/ui/links?request_id={request['id']}&email=bulk%40example.com&status=pending")
    page.get_by_label("Select all matching").check()
    page.get_by_role("button", name="Cancel", exact=True).click()
    confirm(visit, "Cancel", r"Cancel 55 links matching the filter\?")
    assert _link_statuses(console, request["id"]) == {"canceled": 57}


def test_links_bulk_retry_of_failed(visit: Visit, console: Console) -> None:
    request = console.request()
    _failed_links(console, request["id"], 3)
    visit.sign_in()
    visit.open(f"/ui/links?request_id={request['id']}&error=CAPTCHA")
    assert visit.page.locator("tbody tr").count() == 3
    visit.page.get_by_label("Select all matching").check()
    visit.page.get_by_role("button", name="Retry", exact=True).click()
    confirm(visit, "Retry", r"Retry 3 links matching the filter\?")
    assert _link_statuses(console, request["id"]) == {"pending": 3}


def test_accounts_without_passwords(visit: Visit, console: Console) -> None:
    group = console.request()["id"]  # any UUID names a group
    console.post(
        "/accounts",
        {"group_id": group, "email": "poster@example.com", "password": "hunter2-secret"},
    )
    visit.sign_in()
    visit.open(f"/ui/accounts?group_id={group}")
    rows = visit.page.locator("tbody tr")
    assert rows.count() == 1 and "poster@example.com" in rows.inner_text()
    assert "hunter2-secret" not in visit.page.content()


def test_settings_form(visit: Visit, console: Console) -> None:
    visit.sign_in()
    visit.open("/ui/settings")
    visit.page.get_by_label("Max posts per day").fill("40")
    visit.page.get_by_label("Cooldown minutes").fill("2.5")
    visit.page.get_by_role("button", name="Save").click()
    confirm(visit, "Save", "Max posts per day 40, Cooldown minutes 2.5")
    got = console.get("/settings/rate_limit")["settings"]
    assert got["max_posts_per_day"] == "40" and got["cooldown_minutes"] == "2.5"

    visit.open("/ui/settings")
    bad = visit.page.request.post(
        console.url + "/ui/settings",
        form={
            "csrf_token": csrf(visit),
            "max_posts_per_day": "lots",
            "cooldown_minutes": "1",
            "confirmed": "yes",
        },
    )
    assert bad.status == 400 and "Max posts per day must be a whole number" in bad.text()
    assert console.get("/settings/rate_limit")["settings"]["max_posts_per_day"] == "40"


def test_actions_without_a_valid_csrf_token_are_refused(visit: Visit, console: Console) -> None:
    server = console.server()
    visit.sign_in()
    visit.open("/ui/servers")
    url = console.url + f"/ui/servers/{server['id']}/maintenance"
    for form in ({"confirmed": "yes"}, {"confirmed": "yes", "csrf_token": "forged"}):
        assert visit.page.request.post(url, form=form).status == 403
    assert console.get(f"/servers/{server['id']}")["data"]["status"] == "online"
    # and without a session, a token is worth nothing
    anonymous = httpx.post(url, data={"confirmed": "yes", "csrf_token": csrf(visit)})
    assert anonymous.status_code == 403
    ok = visit.page.request.post(url, form={"confirmed": "yes", "csrf_token": csrf(visit)})
    assert ok.status == 200  # followed the redirect
    assert console.get(f"/servers/{server['id']}")["data"]["status"] == "maintenance"


def test_read_only_key(visit: Visit, console: Console) -> None:
    key = console.cli("admin-key", "create", "--name", "viewer", "--read-only")
    server = console.server()
    request = console.request()
    visit.sign_in(key)
    page = visit.page
    assert page.get_by_text("Read-only").is_visible()
    for path in ("/ui/servers", f"/ui/servers/{server['id']}", f"/ui/requests/{request['id']}",
                 "/ui/links", "/ui/settings"):  # fmt: skip
        visit.open(path)
        buttons = {b.inner_text() for b in page.get_by_role("button").all()}
        assert "Sign out" in buttons and not buttons & ACTIONS, (path, buttons)
    url = console.url + f"/ui/servers/{server['id']}/maintenance"
    refused = page.request.post(url, form={"confirmed": "yes", "csrf_token": csrf(visit)})
    assert refused.status == 403
    assert console.get(f"/servers/{server['id']}")["data"]["status"] == "online"
    # the admin API reads for it and refuses its writes
    api = {"X-API-Key": key}
    assert httpx.get(console.url + "/api/v1/admin/servers", headers=api).status_code == 200
    write = httpx.post(
        console.url + "/api/v1/admin/servers", json={"name": "x", "service": "tool"}, headers=api
    )
    assert write.status_code == 403 and write.json()["success"] is False
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login")


def test_docs_from_local_assets(visit: Visit, console: Console) -> None:
    visit.open("/docs")
    visit.page.wait_for_selector(".swagger-ui .info", timeout=20000)
    visit.open("/redoc")
    visit.page.wait_for_selector("redoc .api-info, [class*='api-info']", timeout=20000)
    # the visit fixture then checks that nothing was asked of another host
