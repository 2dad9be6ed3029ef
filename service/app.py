"""Builds the FastAPI app: settings, lifespan (bundle + model loaded once), errors, routes."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.errors import install_error_handlers
from service.routes import router
from service.settings import Settings
from service.state import ModelHolder, load_classifier

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
        log.info("serving bundle %s from %s", classifier.version, settings.artifacts_uri)
        yield

    app = FastAPI(title="Fruit classifier", version="1.0.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.holder = ModelHolder()
    install_error_handlers(app)
    app.include_router(router)
    return app
