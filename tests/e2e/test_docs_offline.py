"""Swagger UI and ReDoc without internet: headless Chromium may reach 127.0.0.1 only, and a photo
uploaded through Swagger UI's "Try it out" gets a 200."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import WAIT_MS
from tests.support import fixture_photos


@pytest.fixture
def offline_page(browser, service_url):
    """A page that can reach the service only; (page, the URLs it tried to reach elsewhere)."""
    context = browser.new_context(viewport={"width": 1200, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    blocked: list[str] = []

    def only_the_service(route):
        if route.request.url.startswith(service_url + "/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_service)
    try:
        yield page, blocked
    finally:
        context.close()


def test_swagger_ui_classifies_an_upload_offline(offline_page, service_url):
    page, blocked = offline_page
    page.goto(service_url + "/docs")
    operation = page.locator("#operations-default-classify_v1_classify_post")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    picker = operation.locator("input[type=file]")
    assert picker.count() == 1  # a file picker, not a text box
    picker.set_input_files(str(fixture_photos("Test", "Banana")[0]))
    operation.locator(".execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip().startswith("200")
    assert '"top_k"' in operation.locator(".live-responses-table .microlight").first.inner_text()
    assert blocked == []


def test_redoc_renders_offline(offline_page, service_url):
    page, blocked = offline_page
    page.goto(service_url + "/redoc")
    page.get_by_text("Classify a fruit photo").first.wait_for()
    assert blocked == []
