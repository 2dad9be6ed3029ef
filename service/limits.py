"""ASGI middleware that bounds what clients hold: request bodies over the upload limit (413) or too
slow to arrive (408), and requests past the connection limit (503)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response

# Room for the multipart envelope around the photo: boundaries, part headers, a long file name.
MULTIPART_OVERHEAD = 64 * 1024


class _BodyRefused(Exception):
    """Raised from `receive` once the streamed body passes the limit or its deadline."""


class UploadLimitMiddleware:
    """413 JSON for bodies over `max_body_bytes`, 408 JSON for bodies not received in time.

    A declared Content-Length over the limit is refused before a byte of the body is read;
    a chunked body is counted as it streams and refused as soon as it passes the limit, so
    memory and temporary disk stay bounded whatever the client declares. The whole body must
    arrive within `body_timeout_s` of the request's start: a client trickling a byte every few
    seconds gets 408 and its connection closed instead of holding it (and a spooled file).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        received = 0
        body_done = False
        refusal: Response | None = None
        response_started = False

        async def guarded_receive() -> Message:
            nonlocal received, body_done, refusal
            if body_done:  # after the body only http.disconnect comes: no deadline on that
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                refusal = _too_slow(self.body_timeout_s)
                raise _BodyRefused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refusal = _too_large(limit)
                    raise _BodyRefused
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refusal is not None:
                # The app turned our exception into its own error response: send ours instead.
                if not response_started:
                    response_started = True
                    await refusal(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        with contextlib.suppress(_BodyRefused):
            await self.app(scope, guarded_receive, guarded_send)
        if refusal is not None and not response_started:
            await refusal(scope, receive, send)


class ConnectionLimitMiddleware:
    """503 JSON `overloaded` (with Retry-After) for a request that comes while more than
    `max_connections` connections are open, or `max_connections` requests are in progress.

    uvicorn's own limit_concurrency does the same with a plain-text 503; only the server knows
    its open connections, so `open_connections` reads them from it (service/__main__.py)."""

    def __init__(self, app: ASGIApp, max_connections: int, open_connections: Callable[[], int]):
        self.app = app
        self.max_connections = max_connections
        self.open_connections = open_connections
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.open_connections() > self.max_connections or self.in_progress >= self.max_connections:
            await _full(self.max_connections)(scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1


# The rest of a refused body is never read: the connection cannot be reused.
_CLOSE = {"connection": "close"}


def _too_large(limit: int) -> Response:
    return error_response(413, "file_too_large", f"The request body is larger than {limit} bytes.", _CLOSE)


def _too_slow(timeout_s: float) -> Response:
    message = f"The request body did not arrive within {timeout_s:g} seconds."
    return error_response(408, "request_timeout", message, _CLOSE)


def _full(max_connections: int) -> Response:
    message = f"The service has more than {max_connections} connections open; retry shortly."
    return error_response(503, "overloaded", message, {"Retry-After": "1", **_CLOSE})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
