"""Prometheus /metrics and JSON request logs with X-Request-ID, on the live service."""

from __future__ import annotations

import json
import time
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import fixture_photos, post_photo

# Lines TensorFlow's C++ runtime writes straight to stderr at import, outside Python logging.
NATIVE_PREFIXES = ("WARNING: All log messages before absl", "I0000 ", "W0000 ", "E0000 ")


def samples(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(snapshot, name: str, **labels) -> float:
    return snapshot.get((name, tuple(sorted(labels.items()))), 0.0)


def post(url: str, data: bytes, **headers) -> httpx.Response:
    return post_photo(url, data, headers=headers)


def test_requests_are_counted_by_route_and_status(service_url):
    photo = fixture_photos("Test", "Banana")[1].read_bytes()
    route = dict(method="POST", handler="/v1/classify")
    before = samples(service_url)
    assert [post(service_url, photo).status_code for _ in range(3)] == [200] * 3
    assert post(service_url, b"not an image").status_code == 400
    too_big = httpx.post(
        f"{service_url}/v1/classify",
        content=b"x" * (11 * 1024 * 1024),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        timeout=60,
    )
    assert too_big.status_code == 413
    httpx.get(f"{service_url}/no/such/page", timeout=10)
    after = samples(service_url)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("fruit_http_requests_total", **route, status="200") == 3
    assert delta("fruit_http_requests_total", **route, status="400") == 1
    assert delta("fruit_http_requests_total", **route, status="413") == 1
    assert delta("fruit_http_requests_total", method="GET", handler="none", status="404") == 1
    assert delta("fruit_http_request_duration_seconds_count", **route, status="200") == 3
    assert delta("fruit_http_request_duration_seconds_sum", **route, status="200") > 0
    # three photos went through the model, in however many batches
    assert delta("fruit_model_batch_size_sum") == 3
    assert 1 <= delta("fruit_model_batch_size_count") <= 3
    assert value(after, "fruit_batch_queue_depth") == 0


def test_model_version_is_exported(service_url, job_run):
    _, result = job_run
    snap = samples(service_url)
    info = [labels for (name, labels) in snap if name == "fruit_model_info"]
    assert len(info) == 1
    info = dict(info[0])
    assert info["version"] == result.version
    assert info["weights"] == "random:0" and info["image_size"] == "64"
    assert value(snap, "fruit_model_loaded_timestamp_seconds", version=result.version) > 0


def test_request_id_is_honoured_or_generated(service_url):
    photo = fixture_photos("Test", "Kiwi")[1].read_bytes()
    mine = f"app-{uuid.uuid4().hex[:8]}"
    assert post(service_url, photo, **{"X-Request-ID": mine}).headers["X-Request-ID"] == mine
    made = httpx.get(f"{service_url}/healthz", timeout=10).headers["X-Request-ID"]
    assert len(made) == 32 and int(made, 16) >= 0
    other = httpx.get(f"{service_url}/healthz", timeout=10).headers["X-Request-ID"]
    assert other != made
    # an id that could forge log lines is replaced, not echoed
    hostile = httpx.get(f"{service_url}/healthz", headers={"X-Request-ID": 'a b"}{'}, timeout=10).headers[
        "X-Request-ID"
    ]
    assert hostile != 'a b"}{' and len(hostile) == 32
    # errors carry it too
    bad = post(service_url, b"", **{"X-Request-ID": "err-1"})
    assert bad.status_code == 400 and bad.headers["X-Request-ID"] == "err-1"


def test_logs_are_json_lines_with_the_request_id(tight_service):
    url, _, log_path = tight_service
    rid = f"log-{uuid.uuid4().hex[:8]}"
    photo = fixture_photos("Test", "Banana")[2].read_bytes()
    assert post(url, photo, **{"X-Request-ID": rid}).status_code == 200
    assert post(url, b"garbage", **{"X-Request-ID": rid + "-bad"}).status_code == 400
    deadline = time.monotonic() + 10
    records = []
    while time.monotonic() < deadline:
        lines = [
            ln
            for ln in log_path.read_text().splitlines()
            if ln.strip() and not ln.startswith(NATIVE_PREFIXES)
        ]
        records = [json.loads(ln) for ln in lines]  # every Python log line is one JSON object
        if any(r.get("request_id") == rid + "-bad" for r in records):
            break
        time.sleep(0.2)
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    access = {r["request_id"]: r for r in records if r["logger"] == "service.access"}
    assert access[rid]["status"] == 200 and access[rid]["path"] == "/v1/classify"
    assert access[rid]["method"] == "POST" and access[rid]["duration_ms"] > 0
    assert access[rid + "-bad"]["status"] == 400
    # Privacy (README): no client address unless LOG_CLIENT_IP is set, and no photo bytes.
    assert all("client" not in r for r in access.values())
    assert "garbage" not in log_path.read_text()
    assert any(r["logger"].startswith("uvicorn") for r in records)  # uvicorn's lines too
