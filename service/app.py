"""Builds the FastAPI app: settings, lifespan (bundle + model loaded once), errors, routes."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.admin import router as admin_router
from service.batching import MicroBatcher
from service.errors import install_error_handlers
from service.limits import MULTIPART_OVERHEAD, UploadLimitMiddleware
from service.logging_setup import RequestIdMiddleware
from service.metrics import MetricsMiddleware, ServiceMetrics
from service.page import router as page_router
from service.reload import Reloader, polling
from service.routes import router
from service.settings import Settings
from service.state import ModelHolder, load_classifier
from service.version_header import ModelVersionHeader

log = logging.getLogger("service")

DESCRIPTION = """Classifies a fruit photo against classes learnt by the Spark job
(ResNet50 features + PCA, nearest class). Every answer names the model version and
whether its weights are random (a demo/test build)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        classifier = await run_in_threadpool(load_classifier, settings)
        app.state.holder.current = classifier
        app.state.metrics.model_in_service(classifier)
        batcher = MicroBatcher(
            app.state.holder.batch_features,
            max_batch=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_ms / 1000,
            max_queue=settings.max_queue_depth,
            on_batch=app.state.metrics.observe_batch,
        )
        await batcher.start()
        app.state.holder.batcher = batcher
        app.state.metrics.track_queue(lambda: batcher.depth)
        log.info("serving bundle %s from %s", classifier.version, settings.artifacts_uri)
        try:
            async with polling(app.state.reloader, settings.reload_interval_s):
                yield
        finally:
            await batcher.stop()

    app = FastAPI(title="Fruit classifier", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.holder = ModelHolder()
    app.state.metrics = ServiceMetrics()
    app.state.reloader = Reloader(app.state.holder, settings, on_swap=app.state.metrics.model_in_service)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(page_router)
    app.add_route("/metrics", app.state.metrics.response, include_in_schema=False)
    # Last added runs first: request id, then metrics, then the upload limit, then the app.
    app.add_middleware(UploadLimitMiddleware, max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(ModelVersionHeader)
    return app
