"""Who may call the API and how often: optional API keys (401) and a per-client rate limit (429)."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_response

API_KEY_HEADER = "X-API-Key"
# For the OpenAPI schema (Swagger UI's "Authorize", generated clients); ApiAccessMiddleware checks.
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="required when the service is configured with API keys (API_KEY_SHA256)",
)
# Training photos are shown by <img> tags, which cannot send a header: they are public (CC BY-SA).
OPEN_PREFIXES = ("/v1/photos/", "/v1/admin/")
# Clients without a key (none configured) are limited by address; this many are remembered.
MAX_TRACKED_CLIENTS = 10_000


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class RateLimiter:
    """A token bucket per client: `per_minute` requests, refilled continuously, bursts up to
    `per_minute`. Thread-safe; the least recently seen clients are forgotten past a bound."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, client: str) -> float:
        """0 if the request may go on, else the seconds until the client's next token."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
            return wait


class ApiAccessMiddleware:
    """Pure ASGI, before the body is read: /v1/ requests need a valid X-API-Key when keys are
    configured (401), and each key (or address, without keys) gets `rate_per_minute` (429)."""

    def __init__(self, app: ASGIApp, key_digests: frozenset[str], rate_per_minute: int):
        self.app = app
        self.key_digests = key_digests
        self.limiter = RateLimiter(rate_per_minute) if rate_per_minute > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope.get("method") == "OPTIONS"  # CORS preflights carry no key
            or not path.startswith("/v1/")
            or path.startswith(OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        client = None
        if self.key_digests:
            key = next((v for k, v in scope["headers"] if k == b"x-api-key"), b"").decode("latin-1")
            digest = key_digest(key) if key else ""
            if digest not in self.key_digests:
                message = f"A valid {API_KEY_HEADER} header is required."
                await error_response(401, "unauthorized", message)(scope, receive, send)
                return
            client = "key:" + digest
        if self.limiter is not None:
            client = client or "addr:" + (scope.get("client") or ("?", 0))[0]
            wait = self.limiter.acquire(client)
            if wait > 0:
                retry = str(max(1, math.ceil(wait)))
                message = f"Too many requests; retry in {retry} s."
                await error_response(429, "rate_limited", message, {"retry-after": retry})(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)
