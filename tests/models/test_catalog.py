"""The shipped class catalog: all 131 classic Fruits-360 classes, overridable."""

from __future__ import annotations

import json
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
    load_overrides,
    localize,
    negotiate_language,
    validate_entries,
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


BAD_OVERRIDES = {
    "fact not text": {"Kiwi": {"fact": 5}},
    "names not text": {"Kiwi": {"names": {"en": 3}}},
    "names not a map": {"Kiwi": {"names": ["Kiwi"]}},
    "unknown kind": {"Kiwi": {"kind": "mineral"}},
    "empty display name": {"Kiwi": {"display_name": ""}},
    "entry not an object": {"Kiwi": "a kiwi"},
}


@pytest.mark.parametrize("overrides", BAD_OVERRIDES.values(), ids=list(BAD_OVERRIDES))
def test_overrides_of_the_wrong_type_are_refused_when_read(overrides):
    with pytest.raises(ValueError, match="Kiwi"):
        load_overrides(json.dumps(overrides).encode())


TYPE_ERRORS = ["fact not text", "names not text", "names not a map", "entry not an object"]


@pytest.mark.parametrize("case", TYPE_ERRORS)
def test_the_type_errors_refused_here_would_fail_the_service_schema(case):
    # What the job now refuses up front used to reach /v1/classes as a 500.
    from service.schemas import ClassInfo

    entry = BAD_OVERRIDES[case]["Kiwi"]
    merged = {**default_catalog()["Kiwi"], **entry} if isinstance(entry, dict) else entry
    with pytest.raises(ValueError):
        ClassInfo.model_validate(merged)


def test_every_entry_the_catalog_accepts_makes_a_service_class_info():
    from service.schemas import ClassInfo

    for label, info in default_catalog().items():
        validate_entries({label: info})
        ClassInfo.model_validate(info)


def test_good_overrides_still_pass():
    overrides = load_overrides(
        b'{"Kiwi": {"fact": "x", "names": {"de": "Kiwi"}}, "New": {"display_name": "N"}}'
    )
    assert build_catalog(["Kiwi"], overrides)["Kiwi"]["names"] == {"de": "Kiwi"}
