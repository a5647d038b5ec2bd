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
links_by_state = Gauge("assign_links", "Links by state", ["status"], registry=registry)
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
    "Requests closed by the dispatcher",
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
