"""Builds the FastAPI app: settings, lifespan (bundle + model loaded once), errors, routes."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from threadpoolctl import threadpool_limits

from service.access import API_KEY_HEADER, ApiAccessMiddleware
from service.admin import router as admin_router
from service.answers import RecentAnswers
from service.docs_policy import DocsPolicy
from service.errors import install_error_handlers
from service.feedback import router as feedback_router
from service.inference import InferencePipeline
from service.limits import MULTIPART_OVERHEAD, UploadLimitMiddleware
from service.logging_setup import REQUEST_ID_HEADER, log_access, new_request_id, valid_request_id
from service.metrics import ServiceMetrics
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
    holder = ModelHolder()
    service_metrics = ServiceMetrics()
    pipeline = InferencePipeline(settings, on_batch=service_metrics.observe_batch)
    reloader = Reloader(holder, settings, pipeline.model_lock, on_swap=service_metrics.model_in_service)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threadpool_limits(settings.blas_threads, user_api="blas")  # for the process's life
        holder.current = await run_in_threadpool(load_classifier, settings)
        service_metrics.model_in_service(holder.current)
        await pipeline.start()
        service_metrics.track_queue(lambda: pipeline.queue_depth)
        log.info("serving bundle %s", holder.current.version)
        try:
            async with polling(reloader, settings.reload_interval_s):
                yield
        finally:
            await pipeline.stop()

    # /docs and /redoc load Swagger UI and ReDoc from this service (fastapi-offline ships the
    # files), so they work on a network without internet.
    app = FastAPIOffline(
        title="Fruit classifier",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url="/static-docs",
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.pipeline = pipeline
    app.state.reloader = reloader
    app.state.answers = RecentAnswers(settings.feedback_max_answers, settings.feedback_window_s)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(feedback_router)
    app.include_router(admin_router)
    app.include_router(page_router)
    app.add_route("/metrics", service_metrics.response, include_in_schema=False)
    # The last added runs first: CORS, request id, HTTP metrics and access log, API keys and
    # rate limit, model version header, upload limit and body deadline, then the app.
    app.add_middleware(
        UploadLimitMiddleware,
        max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        body_timeout_s=settings.body_read_timeout_s,
    )
    app.add_middleware(ModelVersionHeader)
    app.add_middleware(DocsPolicy)
    app.add_middleware(
        ApiAccessMiddleware,
        key_digests=settings.api_key_digests,
        rate_per_minute=settings.rate_limit_per_minute,
    )
    service_metrics.instrument(app, log_access(settings.log_client_ip))
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name=REQUEST_ID_HEADER,
        generator=new_request_id,
        validator=valid_request_id,
    )
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST"],
            allow_headers=[
                API_KEY_HEADER,
                "Content-Type",
                "Accept-Language",
                "If-None-Match",
                REQUEST_ID_HEADER,
            ],
            expose_headers=[
                "ETag",
                "Content-Language",
                "Retry-After",
                REQUEST_ID_HEADER,
                "X-Model-Version",
            ],
            max_age=600,
        )
    return app
