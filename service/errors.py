"""JSON errors with stable codes; every failure path of the API ends here, never in a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.preprocess import ImageError
from service.batching import Overloaded

log = logging.getLogger("service")

# ImageError codes -> HTTP status
IMAGE_STATUS = {
    "unsupported_format": 415,
    "image_too_large": 413,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(ImageError)
    async def _image(_: Request, exc: ImageError):
        return error_response(IMAGE_STATUS.get(exc.code, 400), exc.code, exc.message)

    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, exc: Overloaded):
        # The queue drains in about one model call: a second is a fair first back-off.
        return error_response(
            503, "overloaded", f"The service is busy ({exc}); retry shortly.", {"Retry-After": "1"}
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}")
        return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return error_response(
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            str(exc.detail),
            getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("unexpected error")
        return error_response(500, "internal_error", "An unexpected error occurred.")
