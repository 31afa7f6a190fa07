"""The API's Prometheus metrics, and the ASGI middleware that times every request.

``tagger_api_requests_total{route,method,status}``, ``tagger_api_request_seconds{route,method}`` (route is
the route's template, e.g. ``/v1/tags/{doc_id}``, so ids never become label values),
``tagger_api_suggest_texts`` (texts per suggest request) and ``tagger_api_model_info{version,device}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.tagger import Tagger

__all__ = ["ApiMetrics", "Measured", "ModelInfo"]

# The lookup objective is milliseconds, so the buckets are fine below 10 ms.
_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_TEXTS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ApiMetrics:
    """The API's metrics on their own registry (served at /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("tagger_api_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.seconds = Histogram("tagger_api_request_seconds", "Time to answer a request, by route and method",
                                 ["route", "method"], buckets=_BUCKETS, registry=r)
        self.suggest_texts = Histogram("tagger_api_suggest_texts", "Texts per POST /v1/suggest request",
                                       buckets=_TEXTS_BUCKETS, registry=r)


class ModelInfo(Collector):
    """``tagger_api_model_info{version,device}``: the model the API suggests with, read at scrape time."""

    def __init__(self, served: Callable[[], Tagger]) -> None:
        self.served = served

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tagger = self.served()
        family = GaugeMetricFamily("tagger_api_model_info", "The model POST /v1/suggest uses (value 1)",
                                   labels=["version", "device"])
        family.add_metric([tagger.version, str(tagger.device)], 1.0)
        yield family


class Measured:
    """Counts and times every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500  # 500 unless a response start is sent

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # the router records the matched route
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.seconds.labels(route, scope["method"]).observe(time.perf_counter() - started)
