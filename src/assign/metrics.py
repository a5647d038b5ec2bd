"""Prometheus metrics of the API and the dispatcher, on one registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# the *_created series only add noise to every counter and histogram
disable_created_metrics()

registry = CollectorRegistry(auto_describe=True)

http_requests = Counter(
    "assign_http_requests_total",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
    registry=registry,
)
http_latency = Histogram(
    "assign_http_request_duration_seconds",
    "HTTP request latency by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=registry,
)
links_by_state = Gauge(
    "assign_links", "Links by state (cluster-wide)", ["status"], registry=registry
)
dispatched = Counter(
    "assign_links_dispatched_total", "Links assigned by the dispatcher", registry=registry
)
retried = Counter(
    "assign_links_retried_total", "Failed links put back by the dispatcher", registry=registry
)
rescued = Counter(
    "assign_links_rescued_total",
    "Links taken back from lost servers or stale work",
    ["reason"],
    registry=registry,
)
held_back = Counter(
    "assign_links_held_back_total",
    "Pending links held back by account rate limits",
    registry=registry,
)
canceled = Counter("assign_links_exhausted_total", "Exhausted links canceled", registry=registry)
requests_finished = Counter(
    "assign_requests_finished_total",
    "Requests closed, by final status (dispatcher and API alike)",
    ["status"],
    registry=registry,
)
tick_seconds = Histogram(
    "assign_dispatch_tick_seconds",
    "Duration of one dispatcher tick",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=registry,
)
leader = Gauge(
    "assign_dispatcher_leader", "1 when this process is the acting dispatcher", registry=registry
)

# --- read from the database, the same in every process (see services.gauges) ---------------
servers_by_status = Gauge(
    "assign_servers", "Tool servers by status (cluster-wide)", ["status"], registry=registry
)
requests_by_status = Gauge(
    "assign_requests", "Requests by status (cluster-wide)", ["status"], registry=registry
)
finished_last_hour = Gauge(
    "assign_links_finished_last_hour",
    "Link attempts finished in the last 60 minutes, by result (cluster-wide, from the "
    "throughput history; failed counts failed results, stale timeouts and lost servers)",
    ["result"],
    registry=registry,
)
gauges_age = Gauge(
    "assign_gauges_age_seconds",
    "Age of the cluster-wide gauges when last served (they are cached a few seconds)",
    registry=registry,
)

# --- counted by this process, whichever surface caused the transition ------------------------
link_results = Counter(
    "assign_link_results_total",
    "Results reported by tool servers and accepted, by status",
    ["status"],
    registry=registry,
)
links_claimed = Counter(
    "assign_links_claimed_total", "Links claimed by tool servers", registry=registry
)
links_created = Counter(
    "assign_links_created_total", "Links created (bulk create)", registry=registry
)
servers_lost = Counter(
    "assign_servers_lost_total",
    "Tool servers set offline by the dispatcher for want of a heartbeat",
    registry=registry,
)

# labelled series exist from the start (at 0), so rates and alerts see them before the first event
for _reason in ("server_lost", "stale"):
    rescued.labels(_reason)
for _status in ("completed", "failed"):
    link_results.labels(_status)
for _status in ("completed", "failed", "canceled"):
    requests_finished.labels(_status)
