"""Clients and keys: API keys (401), a per-key rate limit (429 + Retry-After), CORS origins."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from service.access import RateLimiter
from tests.support import running_service

KEY_A, KEY_B = "key-of-the-ios-app-0123456789", "key-of-the-android-app-987654"
PER_MINUTE = 3
ORIGIN = "https://app.example"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def keyed_service(job_run):
    root, _ = job_run
    env = {
        "ARTIFACTS_URI": str(root),
        "API_KEY_SHA256": f"{digest(KEY_A)},{digest(KEY_B).upper()}",
        "RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
        "CORS_ORIGINS": f"{ORIGIN}, https://other.example",
    }
    with running_service(env) as (url, _):
        yield url


def get(url: str, path: str = "/v1/classes", key: str | None = None, **headers) -> httpx.Response:
    if key is not None:
        headers["X-API-Key"] = key
    return httpx.get(url + path, headers=headers, timeout=30)


def test_keys_are_required_on_the_api_only(keyed_service):
    for key in (None, "", "wrong", KEY_A + "x"):
        resp = get(keyed_service, key=key)
        assert resp.status_code == 401, key
        assert resp.json()["error"]["code"] == "unauthorized"
    assert httpx.post(f"{keyed_service}/v1/classify", content=b"x" * 1000, timeout=30).status_code == 401
    # Probes, docs and the photos <img> tags load need no key.
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert get(keyed_service, path).status_code == 200, path
    assert get(keyed_service, "/v1/photos/" + "0" * 24).status_code == 404


def test_each_key_has_its_own_rate_limit(keyed_service):
    statuses = [get(keyed_service, key=KEY_A).status_code for _ in range(PER_MINUTE + 1)]
    assert statuses == [200] * PER_MINUTE + [429]
    limited = get(keyed_service, key=KEY_A)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60 // PER_MINUTE
    assert get(keyed_service, key=KEY_B).status_code == 200  # the other app is not starved


def test_cors_allows_the_configured_origins(keyed_service):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, content-type",
    }
    ok = httpx.options(f"{keyed_service}/v1/classify", headers={"Origin": ORIGIN, **preflight}, timeout=30)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in ok.headers["access-control-allow-headers"].lower()
    bad = httpx.options(
        f"{keyed_service}/v1/classify", headers={"Origin": "https://evil.example", **preflight}, timeout=30
    )
    assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
    resp = get(keyed_service, "/healthz", Origin=ORIGIN)
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "etag" in resp.headers["access-control-expose-headers"].lower()


def test_the_token_bucket_refills_over_time():
    now = [0.0]
    limiter = RateLimiter(per_minute=2, clock=lambda: now[0])
    assert [limiter.acquire("a"), limiter.acquire("a")] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(30.0)
    assert limiter.acquire("b") == 0.0
    now[0] = 29.0
    assert limiter.acquire("a") == pytest.approx(1.0)
    now[0] = 31.0
    assert limiter.acquire("a") == 0.0
