"""Prometheus metrics: requests and latency by route/status, batches, queue depth, model version."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.classifier import Classifier

# Unmatched paths (scanners, typos) share one label so the series count stays bounded.
UNMATCHED_ROUTE = "<unmatched>"


class ServiceMetrics:
    """The service's metrics, in a registry of their own (one per app, so tests can build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "fruit_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "fruit_http_request_duration_seconds",
            "Time to answer a request",
            ["method", "route", "status"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "fruit_model_batch_size",
            "Photos per model call",
            registry=r,
            buckets=(1, 2, 4, 8, 12, 16, 24, 32, 48, 64),
        )
        self.batch_seconds = Histogram(
            "fruit_model_batch_duration_seconds", "Time of one model call", registry=r
        )
        self.queue_depth = Gauge("fruit_batch_queue_depth", "Requests waiting for a model call", registry=r)
        self.model = Info("fruit_model", "The model in service", registry=r)
        self.model_loaded = Gauge(
            "fruit_model_loaded_timestamp_seconds",
            "When the model in service was loaded",
            ["version"],
            registry=r,
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def track_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(depth)

    def model_in_service(self, classifier: Classifier) -> None:
        spec = classifier.featurizer.spec
        self.model.info(
            {
                "version": classifier.version,
                "weights": spec.weights,
                "featurizer": spec.name,
                "image_size": str(spec.image_size),
            }
        )
        self.model_loaded.clear()
        self.model_loaded.labels(version=classifier.version).set(time.time())

    def response(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            labels = (scope["method"], _route_label(scope), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)


def _route_label(scope: Scope) -> str:
    """The matched route's template; a request refused before routing (e.g. 413 by the upload
    limit) is labelled with its path when one of the app's routes matches it."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return route.path
    app = scope.get("app")
    probe = {**scope, "route": None}
    for candidate in getattr(app, "routes", ()):
        if candidate.matches(probe)[0] is Match.FULL:
            return scope["path"]
    return UNMATCHED_ROUTE
