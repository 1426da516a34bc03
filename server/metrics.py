"""Metrics: the app's Prometheus registry and request counters (no global registry)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics", "METRICS"]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "eboard_http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "eboard_http_request_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
        )


METRICS = web.AppKey("metrics", Metrics)
