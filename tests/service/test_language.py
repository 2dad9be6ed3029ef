"""Answers in the user's language: `lang` wins over Accept-Language, English is the fallback."""

from __future__ import annotations

import httpx
import pytest

from tests.support import fixture_photos, post_photo

# Written by hand from the catalog's data file, not read from it.
CHERRY = {"en": ("Cherry", "Cherry"), "fr": ("Cerise", "Cerise")}
KIWI_FACT_FR = "Le kiwi est originaire de Chine, où on l'appelait autrefois groseille de Chine."


def _cherry(service_url: str, **kwargs) -> tuple[httpx.Response, dict]:
    resp = httpx.get(f"{service_url}/v1/classes", timeout=30, **kwargs)
    assert resp.status_code == 200, resp.text
    return resp, next(c for c in resp.json()["classes"] if c["label"] == "Cherry 1")


@pytest.mark.parametrize(
    ("params", "headers", "want"),
    [
        ({}, {}, "en"),
        ({}, {"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.8"}, "fr"),
        ({}, {"Accept-Language": "de-DE, en;q=0.3, fr;q=0.7"}, "fr"),
        ({}, {"Accept-Language": "de, es"}, "en"),
        ({"lang": "fr"}, {"Accept-Language": "en"}, "fr"),
        ({"lang": "en"}, {"Accept-Language": "fr"}, "en"),
        ({"lang": "de"}, {"Accept-Language": "fr"}, "en"),
    ],
)
def test_classes_honour_the_chosen_language(service_url, params, headers, want):
    resp, cherry = _cherry(service_url, params=params, headers=headers)
    assert resp.headers["content-language"] == want
    assert (cherry["info"]["display_name"], cherry["fruit"]["name"]) == CHERRY[want]
    assert cherry["fruit"]["id"] == "cherry"
    assert cherry["info"]["names"] == {"en": "Cherry", "fr": "Cerise"}


def test_facts_are_translated(service_url):
    kiwi = next(
        c
        for c in httpx.get(f"{service_url}/v1/classes?lang=fr", timeout=30).json()["classes"]
        if c["label"] == "Kiwi"
    )
    assert kiwi["info"]["fact"] == KIWI_FACT_FR


def test_classify_answers_in_french(service_url):
    photo = fixture_photos("Test", "Kiwi")[0].read_bytes()
    fr = post_photo(service_url, photo, params={"top_k": 6}, headers={"Accept-Language": "fr"})
    en = post_photo(service_url, photo, params={"top_k": 6})
    assert fr.headers["content-language"] == "fr" and en.headers["content-language"] == "en"
    for f, e in zip(fr.json()["top_k"], en.json()["top_k"], strict=True):
        assert f["label"] == e["label"] and f["score"] == e["score"]
        assert f["info"]["display_name"] == e["info"]["names"]["fr"]
    names_fr = {m["label"]: m["fruit"]["name"] for m in fr.json()["top_k"]}
    assert names_fr["Apple Golden 1"] == names_fr["Apple Red 1"] == "Pomme"
    assert names_fr["Banana"] == "Banane"
