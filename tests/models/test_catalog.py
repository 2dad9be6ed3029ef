"""The shipped class catalog: all 131 classic Fruits-360 classes, overridable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.catalog import (
    KINDS,
    LANGUAGES,
    REQUIRED_KEYS,
    build_catalog,
    default_catalog,
    default_fruits,
    localize,
    negotiate_language,
)
from tests.support import REPO_ROOT, TEST_DATA

EXTRA = {"Corn", "Corn Husk", "Cucumber Ripe", "Cucumber Ripe 2", "Fig", "Watermelon"}
# The 125 class folders of the Fruits-360 subset in ../shared/data (committed: the tests run without it).
CLASSES = (TEST_DATA / "CLASSES.txt").read_text().splitlines()
FULL_DATA = Path(os.environ.get("FRUITS360_DIR", REPO_ROOT.parent / "shared/data/fruits360"))


def test_catalog_covers_the_131_classes():
    catalog = default_catalog()
    assert len(CLASSES) == len(set(CLASSES)) == 125
    assert set(catalog) == set(CLASSES) | EXTRA
    assert len(catalog) == 131
    for label, info in catalog.items():
        assert set(info) == set(REQUIRED_KEYS), label
        assert info["kind"] in KINDS, label
        assert info["names"]["en"] and info["names"]["fr"], label
        assert info["facts"]["en"] == info["fact"] and info["facts"]["fr"], label
        assert info["facts"]["fr"] != info["fact"], label


def test_every_class_has_a_fruit_named_in_every_language():
    catalog, fruits = default_catalog(), default_fruits()
    assert {info["fruit"] for info in catalog.values()} == set(fruits)
    for fruit, names in fruits.items():
        assert set(names) == set(LANGUAGES) and all(names.values()), fruit
    tomatoes = {label for label, info in catalog.items() if info["fruit"] == "tomato"}
    assert len(tomatoes) == 9 and all(label.startswith("Tomato") for label in tomatoes)
    assert catalog["Nut Forest"]["fruit"] == catalog["Hazelnut"]["fruit"] == "hazelnut"
    assert fruits["bell_pepper"] == {"en": "Bell pepper", "fr": "Poivron"}


def test_localize_falls_back_to_english():
    entry = build_catalog(["Kiwi"], {"Kiwi": {"fact": "Our fact."}})["Kiwi"]
    assert localize("Kiwi", entry, "en").fact == "Our fact."
    fr = localize("Kiwi", entry, "fr")
    assert (fr.display_name, fr.fruit, fr.fruit_name) == ("Kiwi", "kiwi", "Kiwi")
    old = localize("Tomato 4", {"display_name": "Tomato", "names": {"en": "Tomato"}}, "fr")
    assert (old.display_name, old.fruit, old.fruit_name) == ("Tomato", "tomato", "Tomato")
    new = localize("Dragon Fruit 3", None, "fr")
    assert (new.display_name, new.fruit) == ("Dragon Fruit", "dragon")


@pytest.mark.parametrize(
    ("header", "want"),
    [
        (None, "en"),
        ("", "en"),
        ("fr", "fr"),
        ("fr-CA", "fr"),
        ("en-GB,en;q=0.9,fr;q=0.8", "en"),
        ("de;q=1, fr;q=0.5, en;q=0.4", "fr"),
        ("fr;q=0, en", "en"),
        ("fr;q=abc", "en"),
        ("*", "en"),
    ],
)
def test_accept_language_negotiation(header, want):
    assert negotiate_language(header) == want


def test_display_names_drop_variety_numbers():
    catalog = default_catalog()
    assert catalog["Cherry 1"]["display_name"] == "Cherry"
    assert catalog["Tomato 2"]["display_name"] == "Tomato"
    assert catalog["Eggplant"]["kind"] == "vegetable"
    assert catalog["Walnut"]["kind"] == "nut"


def test_overrides_and_unknown_labels():
    out = build_catalog(["Kiwi", "Dragon Fruit 3"], {"Kiwi": {"fact": "x"}})
    assert out["Kiwi"]["fact"] == "x" and out["Kiwi"]["names"]["fr"] == "Kiwi"
    assert out["Dragon Fruit 3"]["display_name"] == "Dragon Fruit"
    assert out["Dragon Fruit 3"]["kind"] == "unknown"


@pytest.mark.skipif(not (FULL_DATA / "Training").is_dir(), reason=f"{FULL_DATA} is not here")
def test_class_list_matches_the_dataset_folders():
    for split in ("Training", "Test"):
        assert sorted(p.name for p in (FULL_DATA / split).iterdir() if p.is_dir()) == CLASSES, split
