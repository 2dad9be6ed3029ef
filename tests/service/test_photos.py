"""Photos the app can show: examples name a photo by id and URL, served as JPEG by the service."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from tests.support import fixture_photos, post_photo


def _examples(service_url: str, label: str) -> list[dict]:
    resp = post_photo(service_url, fixture_photos("Test", label)[0].read_bytes(), params={"top_k": 3})
    assert resp.status_code == 200, resp.text
    return [(m["label"], e) for m in resp.json()["top_k"] for e in m["examples"]]


def test_examples_link_to_the_training_photos_themselves(service_url, dataset):
    examples = _examples(service_url, "Banana")
    assert len(examples) >= 3
    for label, example in examples:
        assert set(example) == {"id", "url", "attribution", "distance"}
        assert example["url"] == f"/v1/photos/{example['id']}"
        assert "CC BY-SA 4.0" in example["attribution"]
        resp = httpx.get(service_url + example["url"], timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "image/jpeg"
        # The stored JPEG, byte for byte: one of the training photos of the match's class.
        originals = {p.read_bytes() for p in (dataset / "Training" / label).iterdir()}
        assert resp.content in originals


def test_a_thumbnail_is_a_smaller_jpeg(service_url):
    _, example = _examples(service_url, "Kiwi")[0]
    resp = httpx.get(service_url + example["url"], params={"size": 40}, timeout=30)
    assert resp.status_code == 200
    img = Image.open(io.BytesIO(resp.content))
    assert img.format == "JPEG"
    assert max(img.size) == 40  # Fruits-360 photos are 100 x 100
    # Never enlarged: past its own size the photo comes as stored.
    full = httpx.get(service_url + example["url"], timeout=30).content
    assert httpx.get(service_url + example["url"], params={"size": 1000}, timeout=30).content == full
    assert httpx.get(service_url + example["url"], params={"size": 2}, timeout=30).status_code == 422


def test_photos_are_cacheable_and_revalidated(service_url):
    _, example = _examples(service_url, "Cherry 1")[0]
    url = service_url + example["url"]
    first = httpx.get(url, timeout=30)
    etag = first.headers["etag"]
    assert "max-age=86400" in first.headers["cache-control"]
    again = httpx.get(url, headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    thumb = httpx.get(url, params={"size": 32}, headers={"If-None-Match": etag}, timeout=30)
    assert thumb.status_code == 200 and thumb.headers["etag"] != etag


def test_unknown_photo_ids_are_404_json(service_url):
    for photo_id in ("0" * 24, "not-a-photo-id", "..%2F..%2Fetc%2Fpasswd"):
        resp = httpx.get(f"{service_url}/v1/photos/{photo_id}", timeout=30)
        assert resp.status_code == 404, (photo_id, resp.text)
        assert resp.json()["error"]["code"] in ("photo_not_found", "not_found")
    resp = httpx.get(f"{service_url}/v1/photos/{'0' * 24}", timeout=30)
    assert resp.json()["error"]["code"] == "photo_not_found"


def test_no_answer_carries_a_path_or_bucket_uri(service_url, dataset, job_run):
    root, _ = job_run
    answers = [
        post_photo(service_url, fixture_photos("Test", "Banana")[0].read_bytes(), params={"top_k": 6}).text,
        httpx.get(f"{service_url}/v1/model", timeout=30).text,
        httpx.get(f"{service_url}/v1/classes", timeout=30).text,
        httpx.get(f"{service_url}/readyz", timeout=30).text,
    ]
    for text in answers:
        for leak in (str(dataset), str(root), "/tmp/", "s3://", "file://", ".jpg"):
            assert leak not in text, leak
