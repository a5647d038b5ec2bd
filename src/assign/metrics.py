"""Prometheus metrics of the API and the dispatcher, on one registry."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# the *_created series only add noise to every counter and histogram
disable_created_metrics()

registry = CollectorRegistry(auto_describe=True)


# every metric is on ``registry``
def _counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    return Counter(name, documentation, labels, registry=registry)


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    return Gauge(name, documentation, labels, registry=registry)


def _histogram(
    name: str, documentation: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
) -> Histogram:
    return Histogram(name, documentation, labels, buckets=buckets, registry=registry)


http_requests = _counter(
    "assign_http_requests_total",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
http_latency = _histogram(
    "assign_http_request_duration_seconds",
    "HTTP request latency by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
links_by_state = _gauge("assign_links", "Links by state (cluster-wide)", ["status"])
dispatched = _counter("assign_links_dispatched_total", "Links assigned by the dispatcher")
retried = _counter("assign_links_retried_total", "Failed links put back by the dispatcher")
rescued = _counter(
    "assign_links_rescued_total", "Links taken back from lost servers or stale work", ["reason"]
)
held_back = _counter(
    "assign_links_held_back_total", "Pending links held back by account rate limits"
)
canceled = _counter("assign_links_exhausted_total", "Exhausted links canceled")
requests_finished = _counter(
    "assign_requests_finished_total",
    "Requests closed, by final status (dispatcher and API alike)",
    ["status"],
)
tick_seconds = _histogram(
    "assign_dispatch_tick_seconds",
    "Duration of one dispatcher tick",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
leader = _gauge("assign_dispatcher_leader", "1 when this process is the acting dispatcher")

# --- read from the database, the same in every process (see services.gauges) ---------------
servers_by_status = _gauge("assign_servers", "Tool servers by status (cluster-wide)", ["status"])
requests_by_status = _gauge("assign_requests", "Requests by status (cluster-wide)", ["status"])
finished_last_hour = _gauge(
    "assign_links_finished_last_hour",
    "Link attempts finished in the last 60 minutes, by result (cluster-wide, from the "
    "throughput history; failed counts failed results, stale timeouts and lost servers)",
    ["result"],
)
gauges_age = _gauge(
    "assign_gauges_age_seconds",
    "Age of the cluster-wide gauges when last served (they are cached a few seconds)",
)

# --- counted by this process, whichever surface caused the transition ------------------------
link_results = _counter(
    "assign_link_results_total",
    "Results reported by tool servers and accepted, by status",
    ["status"],
)
links_claimed = _counter("assign_links_claimed_total", "Links claimed by tool servers")
links_created = _counter("assign_links_created_total", "Links created (bulk create)")
servers_lost = _counter(
    "assign_servers_lost_total",
    "Tool servers set offline by the dispatcher for want of a heartbeat",
)

# labelled series exist from the start (at 0), so rates and alerts see them before the first event
for _reason in ("server_lost", "stale"):
    rescued.labels(_reason)
for _status in ("completed", "failed"):
    link_results.labels(_status)
for _status in ("completed", "failed", "canceled"):
    requests_finished.labels(_status)
