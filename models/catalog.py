"""Class information: display names and facts for each Fruits-360 label, overridable per job."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

REQUIRED_KEYS = ("display_name", "names", "kind", "scientific_name", "fact")
KINDS = ("fruit", "vegetable", "nut")


class CatalogEntry(BaseModel):
    """One class's information, as the service answers it: the fields and types of
    service.schemas.ClassInfo (tests/models/test_catalog.py holds the two together). The job
    checks overrides against it before any work; reading a bundle checks its catalog."""

    model_config = ConfigDict(extra="allow")
    display_name: str = Field(min_length=1)
    names: dict[str, str] = Field(default_factory=dict)
    kind: Literal["fruit", "vegetable", "nut", "unknown"] = "unknown"
    scientific_name: str = ""
    fact: str = ""


def default_catalog() -> dict[str, dict]:
    """The shipped catalog: all 131 classes of the classic Fruits-360 release."""
    text = resources.files("models").joinpath("data/catalog.json").read_text(encoding="utf-8")
    return json.loads(text)


def fallback_info(label: str) -> dict:
    """Information for a label the catalog lacks: a readable name, nothing invented."""
    name = re.sub(r"\s+\d+$", "", label).strip() or label
    return {"display_name": name, "names": {"en": name}, "kind": "unknown", "scientific_name": "", "fact": ""}


def validate_entries(catalog: dict) -> None:
    """Every entry must be what the service answers with (CatalogEntry); raises ValueError."""
    if not isinstance(catalog, dict):
        raise ValueError("a catalog must be a JSON object keyed by label")
    for label, info in catalog.items():
        try:
            CatalogEntry.model_validate(info)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise ValueError(f"catalog entry {label!r}: {where}: {first['msg']}") from None


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
    # An override is partial (any field of the entry): checked as if merged onto a full entry.
    validate_entries({k: {"display_name": "x", **v} if isinstance(v, dict) else v for k, v in parsed.items()})
    return parsed
