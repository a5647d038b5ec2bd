"""/metrics: cluster-wide gauges read from the database, counters of API paths, the dispatcher's
own /metrics server, and the shipped dashboard and alerts naming only exported metrics."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from assign.dispatcher import metrics_server
from assign.dispatcher.steps import tick
from assign.services import gauges
from assign.services.context import Context
from tests.dispatcher.test_tick import heartbeat, no_rate_limit
from tests.factories import WORKER, Factory

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


async def scrape(factory: Factory) -> str:
    gauges._read_at.clear()  # the gauges are cached a few seconds per process
    response = await factory.client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_gauges_come_from_the_database(ctx: Context, factory: Factory) -> None:
    await no_rate_limit(factory)
    server = await factory.server(max_threads=2)
    await factory.server(status="maintenance")
    await heartbeat(factory, server)
    request = await factory.request()
    await factory.links(request, 5)
    await tick(ctx)  # 2 queued, 3 pending
    (done, *_) = await factory.claim(server, limit=1)
    await factory.result(done["id"], server)

    text = await scrape(factory)
    assert value(text, "assign_links", status="pending") == 3
    assert value(text, "assign_links", status="queued") == 1
    assert value(text, "assign_links", status="completed") == 1
    assert value(text, "assign_links", status="canceled") == 0
    assert value(text, "assign_servers", status="online") == 1
    assert value(text, "assign_servers", status="maintenance") == 1
    assert value(text, "assign_requests", status="running") == 1
    assert value(text, "assign_links_finished_last_hour", result="completed") == 1
    assert value(text, "assign_links_finished_last_hour", result="failed") == 0


async def test_api_paths_count_finished_requests_and_results(
    ctx: Context, factory: Factory
) -> None:
    server = await factory.server(max_threads=2)
    request = await factory.request()
    before = samples(await scrape(factory))
    (link,) = await factory.links(request, 1)

    def delta(after: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    await factory.run_link(link, server, status="failed", error="captcha")
    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/complete", headers=factory.worker
    )
    assert response.status_code == 200
    after = samples(await scrape(factory))
    assert delta(after, "assign_requests_finished_total", status="completed") == 1
    assert delta(after, "assign_link_results_total", status="failed") == 1
    assert delta(after, "assign_links_claimed_total") == 1
    assert delta(after, "assign_links_created_total") == 1


async def test_dispatch_serves_metrics(ctx: Context, factory: Factory) -> None:
    request = await factory.request()
    await factory.links(request, 2)
    gauges._read_at.clear()
    server = await metrics_server.start(ctx, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await http.get("/metrics")
            assert response.status_code == 200
            assert value(response.text, "assign_links", status="pending") == 2
            assert (await http.get("/nothing")).status_code == 404
            assert (await http.get("/healthz")).status_code == 200
    finally:
        server.close()
        await server.wait_closed()
    await asyncio.sleep(0)


METRIC = re.compile(r"\bassign_[a-z_]+\b")
SUFFIXES = ("_bucket", "_count", "_sum")


async def test_dashboard_and_alerts_name_only_exported_metrics(factory: Factory) -> None:
    # traffic first, so that labelled series exist
    server = await factory.server(max_threads=2)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server)
    exported = {name for name, _ in samples(await scrape(factory))}
    exported |= {n[: -len(s)] for n in exported for s in SUFFIXES if n.endswith(s)}

    dashboard = json.loads((DEPLOY / "grafana" / "assign.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert {r["alert"] for g in rules["groups"] for r in g["rules"]} >= {
        "AssignNoLeader",
        "AssignServersLost",
        "AssignLinksStuckPending",
        "AssignHighFailureRate",
    }
    for expr in exprs + alerts:
        named = set(METRIC.findall(expr))
        assert named, f"no Assign metric in {expr!r}"
        # the dispatcher's own series are exported by every process (0 until it acts)
        assert named <= exported, f"{expr!r} names {named - exported}"
    scrape_config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape_config["scrape_configs"]}
    assert {"assign-api", "assign-dispatch"} <= set(jobs)
    assert len(jobs["assign-api"]["static_configs"][0]["targets"]) >= 2
