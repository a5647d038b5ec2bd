"""The rules of the state machine: every call that moves a link, each answer checked against the
model (status code and body) and the model moved as PRODUCT.md says."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from assign.domain.states import RequestStatus, ServerStatus
from tests.factories import TOOL, WORKER
from tests.model.machine import ALL_LINK_STATUSES, NIL, MachineBase
from tests.model.model import EMAILS, IN_FLIGHT, TYPES, WORKING, MLink, MRequest, MServer

#: (status, profile_url, post_url) of a result; an empty profile_url counts as no profile (a
#: failed result's URLs are not kept: PRODUCT §9)
OUTCOMES = st.tuples(
    st.sampled_from(["completed", "completed", "failed"]),
    st.sampled_from([None, "", "https://profile.test/p", "https://profile.test/p"]),
    st.sampled_from([None, "https://post.test/p"]),
)


class WorkerRules(MachineBase):
    """The worker and admin API: links, requests, servers."""

    @initialize(**MachineBase.request_args, data=st.data())
    def first_request(
        self, service_type: str, priority: int, connect_config: bool, data: st.DataObject
    ) -> None:
        self.add_request(service_type, priority, connect_config)
        request = list(self.requests.values())[-1]
        self._create(request, self.draw_items(data, request, placement=False))

    @precondition(lambda self: len(self.servers) < 4 or len(self.requests) < 3)
    @rule(data=st.data())
    def grow(self, data: st.DataObject) -> None:
        """A new server (maybe in maintenance or offline) or a new request."""
        kinds = [k for k, room in (("server", len(self.servers) < 4),
                                   ("request", len(self.requests) < 3)) if room]  # fmt: skip
        if data.draw(st.sampled_from(kinds), label="new") == "server":
            status = st.sampled_from(["online", "online", "maintenance", "offline"])
            self.add_server(
                **data.draw(st.fixed_dictionaries({**self.server_args, "status": status}))
            )
        else:
            self.add_request(**data.draw(st.fixed_dictionaries(self.request_args)))

    @precondition(lambda self: len(self.links) < 30)
    @rule(data=st.data())
    def create_links(self, data: st.DataObject) -> None:
        request = self.draw_request(data, unknown=False)
        assert request is not None
        items = self.draw_items(data, request, placement=True)
        bad = data.draw(
            st.sampled_from([None] * 8 + ["request", "server", "assign-server", "site"])
        )
        if bad is not None:
            victim = items[data.draw(st.integers(0, len(items) - 1))]
            if bad == "request":
                victim["request_id"] = NIL
            elif bad == "site":
                victim["site_id"] = NIL
            else:
                victim["server_id"] = NIL if bad == "server" else self.factory.assign_server_id
            self.call("POST", f"{WORKER}/links/bulk", json={"links": items}, expect=400)
            return  # all or nothing: the invariants check no link was added
        if request.closed:
            self.call("POST", f"{WORKER}/links/bulk", json={"links": items}, expect=409)
            return
        self._create(request, items)

    def draw_items(
        self, data: st.DataObject, request: MRequest, *, placement: bool
    ) -> list[dict[str, Any]]:
        """1 to 4 links for a bulk create; with ``placement`` some go straight to a server."""
        items = []
        for _ in range(data.draw(st.integers(1, 4), label="count")):
            marker = f"m{next(self.names)}"
            servers = list(self.servers) if placement else []
            items.append({
                "request_id": request.id, "service_type": data.draw(st.sampled_from(TYPES)),
                "site_name": marker, "email": data.draw(st.sampled_from([*EMAILS, None, None])),
                "password": f"pw-{marker}", "max_retries": data.draw(st.integers(0, 2)),
                "server_id": data.draw(st.sampled_from([None] * 5 + servers), label="placed"),
            })  # fmt: skip
        return items

    def _create(self, request: MRequest, items: list[dict[str, Any]]) -> None:
        """A valid bulk create; the new links enter the model under the ids the app gave them."""
        response = self.call("POST", f"{WORKER}/links/bulk", json={"links": items}, expect=200)
        assert response.json() == {"success": True, "created": len(items)}
        params = {"request_id": request.id, "status": ALL_LINK_STATUSES, "limit": 1000}
        listed = self.call("GET", f"{WORKER}/links", params=params, expect=200).json()["data"]
        by_marker = {item["site_name"]: item for item in listed if item["id"] not in self.links}
        assert len(by_marker) == len(items)
        for item in items:
            row, placed = by_marker[item["site_name"]], item["server_id"]
            self.links[row["id"]] = MLink(
                id=row["id"], request_id=request.id, service_type=item["service_type"],
                email=item["email"], password=item["password"], priority=request.priority,
                max_retries=item["max_retries"], created_at=self.now,
                status="queued" if placed else "pending", server_id=placed,
                assigned_at=self.now if placed else None,
            )  # fmt: skip

    @precondition(lambda self: self.links)
    @rule(data=st.data())
    def assign(self, data: st.DataObject) -> None:
        link = self.draw_link(data, [lk for lk in self.links.values() if lk.status == "pending"])
        target = data.draw(
            st.sampled_from([*self.servers, self.factory.assign_server_id, NIL]), label="server"
        )
        server = self.servers.get(target)
        path, body = f"{WORKER}/links/{link.id if link else NIL}/assign", {"server_id": target}
        if link is None or (server is None and target != self.factory.assign_server_id):
            self.call("PUT", path, json=body, expect=404)
            return
        if (
            server is None  # the assign server takes no links
            or link.status != "pending"
            or server.status != "online"  # a heartbeat is not needed: the placement is explicit
            or not server.accepts(link.service_type)
            or self.model.free_slots(server) <= 0
            or self.requests[link.request_id].closed
        ):
            self.call("PUT", path, json=body, expect=409)
            return
        answer = self.call("PUT", path, json=body, expect=200).json()["data"]
        assert answer["status"] == "queued" and answer["server_id"] == server.id
        link.status, link.server_id, link.assigned_at = "queued", server.id, self.now

    @rule(data=st.data())
    def retries(self, data: st.DataObject) -> None:
        """Retry one link or several, or cancel the exhausted ones."""
        ops = ["mark_final_failed", *(["retry", "bulk_retry"] if self.links else [])]
        getattr(self, data.draw(st.sampled_from(ops), label="op"))(data)

    def retry(self, data: st.DataObject) -> None:
        link = self.draw_link(data, [lk for lk in self.links.values() if lk.status == "failed"])
        path = f"{WORKER}/links/{link.id if link else NIL}/retry"
        if link is None:
            self.call("PUT", path, expect=404)
        elif not self.model.can_retry(link):  # exhausted, or its request closed
            self.call("PUT", path, expect=409)
        else:
            answer = self.call("PUT", path, expect=200).json()["data"]
            self.model.retry_now(link)
            assert (answer["status"], answer["retry_count"]) == (link.status, link.retry_count)

    def bulk_retry(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from([*self.links, NIL]), min_size=1, max_size=5))
        chosen = [self.links[i] for i in set(ids) if i in self.links]
        retried = [lk for lk in chosen if self.model.can_retry(lk)]  # closed requests: skipped
        response = self.call(
            "PUT", f"{WORKER}/links/bulk-retry", json={"link_ids": ids}, expect=200
        )
        assert response.json() == {"success": True, "updated": len(retried)}
        for link in retried:
            self.model.retry_now(link)

    def mark_final_failed(self, data: st.DataObject) -> None:
        scope = data.draw(st.sampled_from([*self.requests, None, NIL, "no body"]), label="scope")
        body: Any = None if scope == "no body" else ({"request_id": scope} if scope else {})
        scope = None if scope == "no body" else scope
        exhausted = [lk for lk in self.links.values()
                     if lk.exhausted and scope in (None, lk.request_id)]  # fmt: skip
        response = self.call("PUT", f"{WORKER}/links/mark-final-failed", json=body, expect=200)
        assert response.json() == {"success": True, "updated": len(exhausted)}
        for link in exhausted:
            link.status = "canceled"

    @rule(data=st.data())
    def request_change(self, data: st.DataObject) -> None:
        """A request connects, completes, or gets an operator's status (closing or reopening)."""
        op = data.draw(st.sampled_from(["connect", "complete", "set_request_status"]), label="op")
        profiled = sorted(
            {
                lk.request_id
                for lk in self.links.values()
                if lk.status == "completed" and lk.phase == "create" and lk.has_profile
            }
        )
        request = self.draw_request(data, preferred=[self.requests[r] for r in profiled])
        path = f"{WORKER}/requests/{request.id if request else NIL}/"
        status = data.draw(st.sampled_from([s.value for s in RequestStatus]), label="status")
        body = {"status": status} if op == "set_request_status" else None
        path += {"connect": "connect", "complete": "complete", "set_request_status": "status"}[op]
        if request is None:
            self.call("PUT", path, json=body, expect=404)
            return
        answer = self.call("PUT", path, json=body, expect=200).json()
        if op == "connect":
            moved = self.model.connect_links(request, self.now)
            assert (answer["links_connect"], answer["links_canceled"]) == moved
            request.status = "connecting"
        elif op == "complete":
            assert answer == {"success": True, "updated": True}
            self.model.set_request_status(request, "completed")
        else:
            assert answer["data"]["status"] == status
            if status in ("pending", "running"):  # reopened: completed_at cleared
                assert answer["data"]["completed_at"] is None
            elif status != "connecting":
                assert answer["data"]["completed_at"] is not None
            self.model.set_request_status(request, status)

    @rule(data=st.data())
    def server_change(self, data: st.DataObject) -> None:
        """A server heartbeats, gets a status, or is deleted."""
        ops = ["set_server_status", "delete_server", *(["heartbeat"] if self.servers else [])]
        getattr(self, data.draw(st.sampled_from(ops), label="op"))(data)

    def set_server_status(self, data: st.DataObject) -> None:
        status = data.draw(st.sampled_from([s.value for s in ServerStatus]), label="status")
        server = self.draw_server(data)
        path = f"{WORKER}/servers/{server.id if server else NIL}/status"
        if server is None:
            self.call("PUT", path, json={"status": status}, expect=404)
            return
        answer = self.call("PUT", path, json={"status": status}, expect=200).json()["data"]
        server.status = status
        if status != "online":
            self.model.release_queued({server.id})
        assert answer["status"] == status
        assert answer["active_tasks"] == self.model.in_flight(server.id)

    def delete_server(self, data: st.DataObject) -> None:
        """Refused while the server holds slots; otherwise it goes, its connect links and failed
        connect-phase links canceled ("server deleted"), its other links keep no server."""

        def holds(s: MServer) -> bool:
            return any(
                lk.server_id == s.id and lk.status in IN_FLIGHT for lk in self.links.values()
            )

        idle = [s for s in self.servers.values() if not holds(s)]
        # best of all, an idle server that links still come back to (profiles before their
        # connect step, connect links, failed connect-phase links before their retry)
        returning = [s for s in idle if any(lk.server_id == s.id and lk.has_profile
                     and lk.status in ("completed", "failed", "connect")
                     for lk in self.links.values())]  # fmt: skip
        if idle and data.draw(st.sampled_from([True, True, False]), label="an idle server"):
            server: MServer | None = data.draw(st.sampled_from(returning or idle))
        else:
            server = self.draw_server(data)
        path = f"/servers/{server.id if server else NIL}"
        if server is None or holds(server):
            self.admin("DELETE", path, expect=404 if server is None else 409)
            return
        self.admin("DELETE", path, expect=200)
        self.model.delete_server(server)


class FleetRules(MachineBase):
    """The tool API, the clock and the dispatcher."""

    @precondition(lambda self: self.servers)
    @rule(data=st.data(), limit=st.integers(1, 4))
    def claim(self, data: st.DataObject, limit: int) -> None:
        every = list(self.servers.values())
        busy = [s for s in every if any(lk.server_id == s.id and lk.status in
                ("queued", "connect") for lk in self.links.values())]  # fmt: skip
        self._claim(data.draw(st.sampled_from(busy or every), label="server"), limit)

    def _claim(self, server: MServer, limit: int) -> None:
        """Its queued links (dispatch order), then connect links while it has free slots."""
        mine = sorted((lk for lk in self.links.values() if lk.server_id == server.id),
                      key=lambda x: x.order)  # fmt: skip
        queued = [lk for lk in mine if lk.status == "queued"][:limit]
        more = min(limit - len(queued), self.model.free_slots(server))
        connect = [lk for lk in mine if lk.status == "connect"][: max(more, 0)]
        if server.status == "online":
            server.last_health_check = self.now  # a claim is a heartbeat (PRODUCT.md §12)
        else:
            queued = connect = []  # nothing for a server in maintenance or offline (§9)
        answer = self.call("POST", f"{TOOL}/links/claim", json={"limit": limit}, expect=200,
                           headers={"X-API-Key": server.key}).json()  # fmt: skip
        got = [item["id"] for item in answer["data"]]
        assert answer["total"] == len(got)
        assert sorted(got) == sorted(lk.id for lk in queued + connect), (got, queued, connect)
        for item in answer["data"]:
            link = self.links[item["id"]]
            assert item["password"] == link.password
            link.status = "running" if link.status == "queued" else "connecting"
            link.started_at = self.now
            link.start_attempt(self.now)
            assert item["status"] == link.status

    @precondition(lambda self: self.servers)
    @rule(data=st.data())
    def work_round(self, data: st.DataObject) -> None:
        """A tool server at work (in maintenance too: it claims nothing new, reports the rest)."""
        every = list(self.servers.values())
        busy = [
            s
            for s in every
            if self.model.in_flight(s.id)
            or any(lk.server_id == s.id and lk.status == "connect" for lk in self.links.values())
        ]
        self.work(data.draw(st.sampled_from(busy or every), label="server"), data)

    def work(self, server: MServer, data: st.DataObject) -> None:
        """Claim, then report on each working link — or, now and then, stay silent about one."""
        self._claim(server, data.draw(st.integers(1, 4), label="limit"))
        for link in [lk for lk in self.links.values()
                     if lk.server_id == server.id and lk.status in WORKING]:  # fmt: skip
            if data.draw(st.sampled_from([True] * 5 + [False]), label="reports"):
                self._report(link, server, *data.draw(OUTCOMES, label="outcome"))

    @precondition(lambda self: self.links and self.servers)
    @rule(data=st.data(), outcome=OUTCOMES)
    def result(self, data: st.DataObject, outcome: tuple[str, str | None, str | None]) -> None:
        link = self.draw_link(data, [lk for lk in self.links.values() if lk.status in WORKING])
        own = (
            link is not None
            and link.server_id in self.servers
            and data.draw(st.sampled_from([True, True, True, False]), label="own server")
        )
        server = self.servers[link.server_id] if own else self.draw_server(data, unknown=False)  # type: ignore[union-attr,index]
        assert server is not None
        self._report(link, server, *outcome)

    def _report(self, link: MLink | None, server: MServer, status: str,
                profile_url: str | None, post_url: str | None) -> None:  # fmt: skip
        """PUT /links/:id/result by ``server``: 404 unless the link is on it, 409 unless working."""
        body = {"status": status, **({"profile_url": profile_url} if profile_url is not None else {}),
                **({"post_url": post_url} if post_url is not None else {})}  # fmt: skip
        path, headers = f"{TOOL}/links/{link.id if link else NIL}/result", {"X-API-Key": server.key}
        if link is None or link.server_id != server.id:
            self.call("PUT", path, json=body, expect=404, headers=headers)
            return
        if link.status not in WORKING:
            self.call("PUT", path, json=body, expect=409, headers=headers)
            return
        answer = self.call("PUT", path, json=body, expect=200, headers=headers).json()["data"]
        if status == "completed":  # a failed attempt's URLs are not kept on the link (§9)
            link.profile_url = profile_url if profile_url is not None else link.profile_url
            link.post_url = post_url if post_url is not None else link.post_url
        if status == "completed":
            link.status, link.completed_at = "completed", self.now
            link.end_attempt("completed", self.now)
            if link.phase == "create":
                self.requests[link.request_id].created_links += 1
        else:
            self.model.fail(link, self.now)
        assert answer["status"] == link.status

    @rule(data=st.data(), minutes=st.sampled_from([1, 1, 2, 4, 6, 16]),
          fleet_beats=st.sampled_from([True, True, False]),
          then_tick=st.sampled_from([True, True, False]))  # fmt: skip
    def advance(
        self, data: st.DataObject, minutes: int, fleet_beats: bool, then_tick: bool
    ) -> None:
        """Time passes; the stale listing shows exactly the links working for too long. Mostly
        the servers keep sending heartbeats meanwhile, the dispatcher runs, and some servers
        do a round of work."""
        self.clock.advance(minutes=minutes)
        timeout = data.draw(st.sampled_from([None, 3]), label="timeout_minutes")
        params: dict[str, Any] = {"stale": "true", "limit": 1000,
                                  **({"timeout_minutes": timeout} if timeout else {})}  # fmt: skip
        cutoff = self.now - timedelta(minutes=timeout or 15)  # the listing's default is 15
        listed = self.call("GET", f"{WORKER}/links", params=params, expect=200).json()
        assert {item["id"] for item in listed["data"]} == {
            lk.id for lk in self.links.values()
            if lk.status in WORKING and lk.started_at is not None and lk.started_at < cutoff
        }  # fmt: skip
        if fleet_beats:
            for server in self.servers.values():
                self.beat(server)
        if then_tick:
            self.dispatcher_tick()
        for server in list(self.servers.values()):
            if data.draw(st.booleans(), label=f"{server.id} works"):
                self.work(server, data)

    @rule()
    def dispatcher_tick(self) -> None:
        from assign.dispatcher.steps import tick

        expected = self.model.tick(self.now)
        report = self.run(tick(self.ctx))
        got = (
            report.servers_lost,
            report.released,
            report.lost_failed,
            report.stale_failed,
            report.retried,
            report.exhausted,
            report.assigned,
            report.started,
            {str(k): v for k, v in report.finished.items()},
        )
        want = (expected.servers_lost, expected.released, expected.lost_failed,
                expected.stale_failed, expected.retried, expected.exhausted, expected.assigned,
                expected.started, expected.finished)  # fmt: skip
        assert got == want, f"tick: app {got}, model {want}"
