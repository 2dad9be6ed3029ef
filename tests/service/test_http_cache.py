"""Cacheable static data: /v1/classes and /v1/model carry an ETag of the model version; 304 on a match."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("path", ["/v1/classes", "/v1/model"])
def test_a_matching_if_none_match_gets_304(service_url, job_run, path):
    _, result = job_run
    first = httpx.get(service_url + path, timeout=30)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert result.version in etag
    assert first.headers["cache-control"] == "no-cache"
    again = httpx.get(service_url + path, headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    listed = httpx.get(service_url + path, headers={"If-None-Match": f'"other", W/{etag}'}, timeout=30)
    assert listed.status_code == 304
    stale = httpx.get(service_url + path, headers={"If-None-Match": '"classes-old-en"'}, timeout=30)
    assert stale.status_code == 200 and stale.json() == first.json()


def test_classes_etag_depends_on_the_language(service_url):
    en = httpx.get(f"{service_url}/v1/classes", timeout=30)
    fr = httpx.get(f"{service_url}/v1/classes", params={"lang": "fr"}, timeout=30)
    assert en.headers["etag"] != fr.headers["etag"]
    assert "Accept-Language" in fr.headers["vary"]
    cross = httpx.get(
        f"{service_url}/v1/classes", params={"lang": "fr"}, headers={"If-None-Match": en.headers["etag"]}
    )
    assert cross.status_code == 200 and cross.headers["content-language"] == "fr"
