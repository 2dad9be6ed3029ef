"""The shipped class catalog: all 131 classic Fruits-360 classes, overridable."""

from __future__ import annotations

from models.catalog import KINDS, REQUIRED_KEYS, build_catalog, default_catalog
from tests.support import SHARED_DATA

EXTRA = {"Corn", "Corn Husk", "Cucumber Ripe", "Cucumber Ripe 2", "Fig", "Watermelon"}


def test_catalog_covers_the_131_classes():
    catalog = default_catalog()
    shared = {p.name for p in (SHARED_DATA / "Training").iterdir() if p.is_dir()}
    assert len(shared) == 125
    assert set(catalog) == shared | EXTRA
    assert len(catalog) == 131
    for label, info in catalog.items():
        assert set(info) == set(REQUIRED_KEYS), label
        assert info["kind"] in KINDS, label
        assert info["names"]["en"] and info["names"]["fr"], label


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
