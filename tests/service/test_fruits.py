"""Answers by fruit: each variety names its fruit, and group=fruit sums the varieties' scores."""

from __future__ import annotations

import pytest

from tests.conftest import LABELS
from tests.support import fixture_photos, post_photo

# The fixture's six classes and their fruits, written by hand.
FRUIT_OF = {
    "Apple Golden 1": "apple",
    "Apple Red 1": "apple",
    "Banana": "banana",
    "Cherry 1": "cherry",
    "Cherry 2": "cherry",
    "Kiwi": "kiwi",
}


@pytest.mark.parametrize("label", ["Cherry 2", "Apple Red 1"])
def test_group_by_fruit_sums_the_varieties(service_url, label):
    photo = fixture_photos("Test", label)[0].read_bytes()
    resp = post_photo(service_url, photo, params={"top_k": 6, "group": "fruit"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {m["label"] for m in body["top_k"]} == set(LABELS)  # all six, so the sums are complete
    expected: dict[str, float] = {}
    for m in body["top_k"]:
        assert m["fruit"]["id"] == FRUIT_OF[m["label"]]
        expected[m["fruit"]["id"]] = expected.get(m["fruit"]["id"], 0.0) + m["score"]
    fruits = body["fruits"]
    assert {f["id"] for f in fruits} == set(expected)
    for f in fruits:
        assert f["score"] == pytest.approx(expected[f["id"]], abs=1e-6)
    # Best first. Fruits whose sums differ by rounding alone (two near-zero sums) may come in
    # either order, so the order is checked on the answer's own scores.
    scores = [f["score"] for f in fruits]
    assert scores == sorted(scores, reverse=True)
    assert fruits[0]["id"] == max(expected, key=lambda f: expected[f])
    assert sum(f["score"] for f in fruits) == pytest.approx(1.0, abs=1e-6)


def test_top_level_fruit_and_default_grouping(service_url):
    photo = fixture_photos("Test", "Banana")[0].read_bytes()
    body = post_photo(service_url, photo, params={"top_k": 2}).json()
    assert body["fruits"] is None
    if body["known"]:
        assert body["fruit"] == body["top_k"][0]["fruit"]
        assert body["fruit"]["id"] == FRUIT_OF[body["label"]]
    grouped = post_photo(service_url, photo, params={"top_k": 2, "group": "fruit"}).json()
    assert len(grouped["fruits"]) == 2  # as many fruits as top_k asks for
    assert post_photo(service_url, photo, params={"group": "colour"}).status_code == 422
