"""The page at `/` in headless Chromium (Debian's package, driven by Playwright) against the live
service: upload real photos and compare what the page shows with the API's own answers."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import WAIT_MS
from tests.support import REPO_ROOT, fixture_photos, post_photo

ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture
def page(browser, service_url):
    context = browser.new_context(viewport={"width": 900, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    # Only the service under test may be reached: anything else would mean a leak.
    page.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(service_url) else route.abort(),
    )
    page.goto(service_url + "/")
    try:
        yield page
    finally:
        context.close()


def api_classify(url: str, name: str, data: bytes) -> httpx.Response:
    return post_photo(url, data, name=name, content_type="application/octet-stream", params={"top_k": 5})


def upload(page, path: Path) -> None:
    page.set_input_files("#file", str(path))


def test_nothing_shows_before_a_photo_is_chosen(page):
    # No empty image box ("the photo you chose") and no image without a source.
    assert not page.is_visible("#photo") and not page.is_visible("#preview")
    assert page.eval_on_selector_all("img", "imgs => imgs.filter(i => i.offsetParent).length") == 0


def test_upload_shows_the_apis_top_classes(page, service_url):
    photo = fixture_photos("Test", "Banana")[0]
    api = api_classify(service_url, photo.name, photo.read_bytes()).json()
    upload(page, photo)
    page.wait_for_selector("#results li.match")
    shown = page.locator("#results li.match")
    assert shown.count() == len(api["top_k"]) == 5
    assert [shown.nth(i).get_attribute("data-label") for i in range(shown.count())] == [
        m["label"] for m in api["top_k"]
    ]
    assert page.get_attribute("#answer", "data-label") == api["label"]  # None when unknown
    # Example photos come from the service, as thumbnails, and load.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.examples img')].every(i => i.complete && i.naturalWidth)"
    )
    srcs = page.eval_on_selector_all(".examples img", "imgs => imgs.map(i => i.src)")
    assert srcs and all(s.startswith(service_url + "/v1/photos/") and s.endswith("?size=96") for s in srcs)
    assert len(srcs) == sum(len(m["examples"]) for m in api["top_k"])
    assert "By fruit:" in page.inner_text("#fruits")
    top = api["top_k"][0]
    first = shown.nth(0).inner_text()
    assert top["info"]["display_name"] in first and f"{100 * top['score']:.1f}%" in first
    if top["info"]["fact"]:
        assert top["info"]["fact"] in first
    if api["known"]:
        assert page.inner_text("#top-class") == api["display_name"]
        assert page.inner_text("#top-fruit") == api["fruit"]["name"]
    else:
        assert page.is_visible("#not-recognised")
    # The preview shows the chosen photo (decoded by the browser).
    assert page.eval_on_selector("#preview", "img => img.complete && img.naturalWidth") == 100
    # The fixture's model has random weights: the page must say so.
    assert page.is_visible("#banner") and "RANDOM" in page.inner_text("#banner")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page-classified.png"), full_page=True)


def test_the_page_answers_in_the_chosen_language(page, service_url):
    photo = fixture_photos("Test", "Kiwi")[0]
    api = post_photo(service_url, photo.read_bytes(), params={"top_k": 5, "lang": "fr"}).json()
    page.select_option("#lang", "fr")
    upload(page, photo)
    page.wait_for_selector("#results li.match")
    names = page.eval_on_selector_all("#results li.match .name", "spans => spans.map(s => s.textContent)")
    assert names == [m["info"]["display_name"] for m in api["top_k"]]
    assert any(n != m["names"]["en"] for n, m in zip(names, [m["info"] for m in api["top_k"]], strict=True))


def test_not_recognised_state(page, service_url, tmp_path):
    # Noise is nothing like a fruit on white: the API calls it unknown, and so must the page.
    noise = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    path = tmp_path / "noise.png"
    path.write_bytes(buf.getvalue())
    api = api_classify(service_url, path.name, buf.getvalue()).json()
    assert api["known"] is False
    upload(page, path)
    page.wait_for_selector("#not-recognised")
    assert "Not recognised" in page.inner_text("#not-recognised")
    assert page.get_attribute("#answer", "data-known") == "false"
    assert page.locator("#top-class").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page-not-recognised.png"), full_page=True)


def test_errors_are_shown_in_words(page, service_url, tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_bytes(b"these are notes, not a photo")
    api = api_classify(service_url, path.name, path.read_bytes())
    assert api.status_code == 400
    upload(page, path)
    page.wait_for_selector("#status.error")
    status = page.inner_text("#status")
    assert api.json()["error"]["message"] in status
    assert page.locator("#results li").count() == 0
