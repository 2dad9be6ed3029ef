"""End-to-end fixtures: one real S3 endpoint (moto server on 127.0.0.1) for the session, and
headless Chromium (Debian's package, driven by Playwright) for the page and /docs tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.s3 import S3Endpoint, moto_server


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> S3Endpoint:
    with moto_server(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=WAIT_MS)
        try:
            yield chromium
        finally:
            chromium.close()
