"""Class information: display names and facts for each Fruits-360 label, overridable per job."""

from __future__ import annotations

import json
import re
from importlib import resources

REQUIRED_KEYS = ("display_name", "names", "kind", "scientific_name", "fact")
KINDS = ("fruit", "vegetable", "nut")


def default_catalog() -> dict[str, dict]:
    """The shipped catalog: all 131 classes of the classic Fruits-360 release."""
    text = resources.files("models").joinpath("data/catalog.json").read_text(encoding="utf-8")
    return json.loads(text)


def fallback_info(label: str) -> dict:
    """Information for a label the catalog lacks: a readable name, nothing invented."""
    name = re.sub(r"\s+\d+$", "", label).strip() or label
    return {"display_name": name, "names": {"en": name}, "kind": "unknown", "scientific_name": "", "fact": ""}


def validate_entries(catalog: dict) -> None:
    for label, info in catalog.items():
        if not isinstance(info, dict) or not info.get("display_name"):
            raise ValueError(f"catalog entry {label!r} needs at least a display_name")
        if "kind" in info and info["kind"] not in (*KINDS, "unknown"):
            raise ValueError(f"catalog entry {label!r}: kind must be one of {KINDS}")


def build_catalog(labels: list[str], overrides: dict | None = None) -> dict[str, dict]:
    """One entry per label: the default catalog, updated field-by-field by `overrides`."""
    overrides = overrides or {}
    validate_entries({k: {"display_name": "x", **v} for k, v in overrides.items()})
    base = default_catalog()
    out = {}
    for label in labels:
        entry = dict(base.get(label) or fallback_info(label))
        entry.update(overrides.get(label, {}))
        out[label] = entry
    return out


def load_overrides(data: bytes) -> dict:
    """Parse an override file: {label: {field: value}}; raises ValueError."""
    parsed = json.loads(data)
    if not isinstance(parsed, dict):
        raise ValueError("a catalog file must hold a JSON object keyed by label")
    return parsed
