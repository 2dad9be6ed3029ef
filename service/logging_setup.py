"""JSON logs, one object per line, each tagged with the request id that the response echoes.

The request id is asgi-correlation-id's (a valid incoming X-Request-ID is kept, otherwise a
new one is made; see app.py); its log filter puts it on every record as `request_id`."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Callable

from asgi_correlation_id import CorrelationIdFilter
from prometheus_fastapi_instrumentator import metrics
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is echoed into logs and headers: accept only short, plain tokens.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_log = logging.getLogger("service.access")


def valid_request_id(value: str) -> bool:
    return bool(_VALID_REQUEST_ID.match(value))


def new_request_id() -> str:
    return uuid.uuid4().hex


def setup_logging(level: str = "info", stream=None) -> None:
    """Route every logger (ours, uvicorn's, TensorFlow's) to one JSON-lines handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}{correlation_id}",
            style="{",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "correlation_id": "request_id",
            },
        )
    )
    handler.addFilter(CorrelationIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def log_access(log_client_ip: bool = False) -> Callable[[metrics.Info], None]:
    """One access-log line per request (method, path, status, duration; the client's address
    only with `log_client_ip`); run by the Prometheus instrumentator after each response,
    inside the request's id context."""

    def log(info: metrics.Info) -> None:
        client = info.request.client
        extra = {
            "method": info.method,
            "path": info.request.url.path,
            "status": int(info.modified_status),
            "duration_ms": round(info.modified_duration * 1000, 2),
        }
        if log_client_ip:
            extra["client"] = client.host if client else None
        access_log.info("request", extra=extra)

    return log
