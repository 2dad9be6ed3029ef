"""Uploads as phones send them: the photo as the raw body, and HEIC (an iPhone's default format)."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support import encode, fixture_photos, post_photo

LIMIT = 10 * 1024 * 1024  # the service's default MAX_UPLOAD_BYTES


def post_raw(url: str, data: bytes, content_type: str, path: str = "/v1/classify", **kw) -> httpx.Response:
    return httpx.post(f"{url}{path}", content=data, headers={"Content-Type": content_type}, timeout=60, **kw)


def heic(img: Image.Image) -> bytes:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    return encode(img, "HEIF", quality=90)


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_a_raw_body_gets_the_multipart_answer(service_url, fmt, content_type):
    img = Image.open(fixture_photos("Test", "Cherry 1")[0]).convert("RGB")
    data = encode(img, fmt)
    raw = post_raw(service_url, data, content_type, params={"top_k": 6})
    form = post_photo(service_url, data, params={"top_k": 6})
    assert raw.status_code == 200, raw.text
    assert [(m["label"], m["score"]) for m in raw.json()["top_k"]] == [
        (m["label"], m["score"]) for m in form.json()["top_k"]
    ]


def test_heic_is_decoded_like_its_pixels(service_url):
    img = Image.open(fixture_photos("Test", "Banana")[0]).convert("RGB")
    data = heic(img)
    assert data[4:12] == b"ftypheic"
    # What the HEIC holds, decoded here and sent losslessly: the service must see the same pixels.
    decoded = Image.open(io.BytesIO(data)).convert("RGB")
    as_png = encode(decoded, "PNG")
    raw = post_raw(service_url, data, "image/heic", path="/v1/embed")
    form = post_photo(service_url, data, path="/v1/embed", name="IMG_0001.HEIC", content_type="image/heic")
    png = post_photo(service_url, as_png, path="/v1/embed", name="x.png", content_type="image/png")
    assert raw.status_code == form.status_code == png.status_code == 200, raw.text
    np.testing.assert_allclose(raw.json()["embedding"], png.json()["embedding"], rtol=1e-5, atol=1e-5)
    assert raw.json()["embedding"] == form.json()["embedding"]


def test_other_body_types_are_415_and_a_missing_photo_422(service_url):
    photo = fixture_photos("Test", "Kiwi")[0].read_bytes()
    for content_type in ("text/plain", "application/octet-stream", "image/gif"):
        resp = post_raw(service_url, photo, content_type)
        assert resp.status_code == 415, (content_type, resp.text)
        assert resp.json()["error"]["code"] == "unsupported_media_type"
    empty = post_raw(service_url, b"", "image/jpeg")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_file"
    nothing = httpx.post(f"{service_url}/v1/classify", timeout=30)
    assert nothing.status_code == 422 and "file" in nothing.json()["error"]["message"]


def test_a_raw_body_over_the_limit_is_413(service_url):
    resp = post_raw(service_url, b"\xff\xd8\xff" + b"\0" * LIMIT, "image/jpeg")
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "file_too_large"
