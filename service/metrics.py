"""Prometheus metrics: HTTP requests and latency (by the instrumentator), batches, queue depth, model."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, Info, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator, metrics
from starlette.requests import Request
from starlette.responses import Response

from models.classifier import Classifier

HTTP_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServiceMetrics:
    """The service's metrics, in a registry of their own (one per app, so tests can build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
                "weights": spec.public_weights,  # never a path or a bucket
                "featurizer": spec.name,
                "image_size": str(spec.image_size),
                "precision": classifier.featurizer.precision,
            }
        )
        self.model_loaded.clear()
        self.model_loaded.labels(version=classifier.version).set(time.time())

    def response(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def instrument(self, app: FastAPI, *also: Callable[[metrics.Info], None]) -> None:
        """HTTP metrics by prometheus-fastapi-instrumentator, in this registry:
        fruit_http_requests_total and fruit_http_request_duration_seconds by method, handler
        (the route template; "none" for paths no route matches) and exact status. `also` are
        more functions it calls after each response (the access log)."""
        instrumentator = Instrumentator(
            should_group_status_codes=False, should_group_untemplated=True, registry=self.registry
        )
        common = {"metric_namespace": "fruit", "registry": self.registry}
        instrumentator.add(metrics.requests(**common))
        instrumentator.add(metrics.latency(buckets=HTTP_LATENCY_BUCKETS, **common))
        for fn in also:
            instrumentator.add(fn)
        instrumentator.instrument(app)
