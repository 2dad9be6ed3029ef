"""The real app under uvicorn, over HTTP, serving a bundle made by the real job."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LABELS
from tests.support import fixture_photos, post_photo


def test_classify_returns_the_documented_contract(service_url):
    photo = fixture_photos("Test", "Banana")[0].read_bytes()
    resp = post_photo(service_url, photo, params={"top_k": 3})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["label"] in LABELS or (body["label"] is None and not body["known"])
    assert isinstance(body["known"], bool)
    assert len(body["top_k"]) == 3
    labels = [m["label"] for m in body["top_k"]]
    assert len(set(labels)) == 3 and labels[0] == (body["label"] or labels[0])
    distances = [m["distance"] for m in body["top_k"]]
    assert distances == sorted(distances)
    for match in body["top_k"]:
        assert 0.0 <= match["score"] <= 1.0
        assert match["info"]["display_name"]
        assert 1 <= len(match["examples"]) <= 3
        assert all(e["url"] == f"/v1/photos/{e['id']}" for e in match["examples"])
    assert body["model"]["weights"] == "random:0"
    assert body["model"]["random_weights"] is True
    assert "RANDOM" in body["warning"]


def test_default_top_k_is_five(service_url):
    resp = post_photo(service_url, fixture_photos("Test", "Kiwi")[0].read_bytes())
    assert resp.status_code == 200
    assert len(resp.json()["top_k"]) == 5


def test_format_is_detected_from_bytes_not_declared_type(service_url):
    photo = fixture_photos("Test", "Kiwi")[0].read_bytes()
    resp = post_photo(service_url, photo, name="notes.txt", content_type="text/plain")
    assert resp.status_code == 200
    fake = post_photo(service_url, b"hello, I am text", name="photo.jpg", content_type="image/jpeg")
    assert fake.status_code == 400
    assert fake.json()["error"]["code"] == "not_an_image"


@pytest.mark.parametrize("top_k", [0, 21, -1, "many"])
def test_top_k_out_of_range_is_422(service_url, top_k):
    resp = post_photo(service_url, fixture_photos("Test", "Kiwi")[0].read_bytes(), params={"top_k": top_k})
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_request"


def test_missing_file_field_is_422(service_url):
    resp = httpx.post(f"{service_url}/v1/classify", data={"x": "1"}, timeout=30)
    assert resp.status_code == 422
    assert "file" in resp.json()["error"]["message"]


def test_probes_and_metadata(service_url, job_run):
    _, result = job_run
    assert httpx.get(f"{service_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{service_url}/readyz").json()
    assert ready == {"status": "ready", "version": result.version}
    model = httpx.get(f"{service_url}/v1/model").json()
    assert model["model"]["version"] == result.version
    assert model["classes"] == len(LABELS)
    assert model["skipped_photos"] == 1
    classes = httpx.get(f"{service_url}/v1/classes").json()["classes"]
    assert [c["label"] for c in classes] == sorted(LABELS)
    cherry = next(c for c in classes if c["label"] == "Cherry 1")
    assert cherry["info"]["display_name"] == "Cherry"
    assert cherry["info"]["names"]["fr"] == "Cerise"
    assert cherry["training_photos"] == 16


def test_docs_and_openapi_describe_the_contract(service_url):
    assert httpx.get(f"{service_url}/docs").status_code == 200
    schema = httpx.get(f"{service_url}/openapi.json").json()
    classify = schema["paths"]["/v1/classify"]["post"]
    assert {"200", "400", "413", "415", "422"} <= set(classify["responses"])
    props = schema["components"]["schemas"]["ClassifyResponse"]["properties"]
    assert {"label", "known", "top_k", "model"} <= set(props)


def test_top_k_defaults_to_the_setting(service_url, tight_service):
    photo = fixture_photos("Test", "Kiwi")[0].read_bytes()
    assert len(post_photo(service_url, photo).json()["top_k"]) == 5  # DEFAULT_TOP_K unset: 5
    tight_url, _, _ = tight_service
    assert len(post_photo(tight_url, photo).json()["top_k"]) == 2  # DEFAULT_TOP_K=2
    assert len(post_photo(tight_url, photo, params={"top_k": 4}).json()["top_k"]) == 4
