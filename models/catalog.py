"""Class information: names, facts and fruit of each Fruits-360 label, per language, overridable per job."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

REQUIRED_KEYS = ("display_name", "names", "kind", "scientific_name", "fact", "facts", "fruit")
KINDS = ("fruit", "vegetable", "nut")
# The languages every shipped entry is complete in; the first is the fallback.
LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = LANGUAGES[0]


def _data(name: str) -> dict:
    text = resources.files("models").joinpath(f"data/{name}").read_text(encoding="utf-8")
    return json.loads(text)


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
    facts: dict[str, str] = Field(default_factory=dict)
    fruit: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,50}$")


def default_catalog() -> dict[str, dict]:
    """The shipped catalog: all 131 classes of the classic Fruits-360 release."""
    return _data("catalog.json")


def default_fruits() -> dict[str, dict[str, str]]:
    """The shipped fruits: fruit id -> {language: name}. Varieties of one fruit share its id."""
    return _data("fruits.json")


def _variety_free(label: str) -> str:
    return re.sub(r"\s+\d+$", "", label).strip() or label


def fallback_fruit(label: str) -> str:
    """A fruit id for a label the catalog lacks: its first word (`Dragon Fruit 3` -> `dragon`)."""
    return re.sub(r"[^a-z0-9]+", "_", _variety_free(label).split()[0].lower()).strip("_") or "unknown"


def fallback_info(label: str) -> dict:
    """Information for a label the catalog lacks: a readable name, nothing invented."""
    name = _variety_free(label)
    fruit = fallback_fruit(label)
    return {
        "display_name": name,
        "names": {"en": name},
        "kind": "unknown",
        "scientific_name": "",
        "fact": "",
        "facts": {},
        "fruit": fruit,
        "fruit_names": {"en": fruit.replace("_", " ").capitalize()},
    }


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
    """One entry per label: the default catalog, updated field-by-field by `overrides`, with its
    fruit's names (`fruit_names`) so that a bundle's catalog answers on its own."""
    overrides = overrides or {}
    validate_entries({k: {"display_name": "x", **v} for k, v in overrides.items()})
    base, fruits = default_catalog(), default_fruits()
    out = {}
    for label in labels:
        entry = dict(base.get(label) or fallback_info(label))
        entry.update(overrides.get(label, {}))
        if entry["fruit"] in fruits and "fruit_names" not in overrides.get(label, {}):
            entry["fruit_names"] = dict(fruits[entry["fruit"]])
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


@dataclass(frozen=True)
class LocalInfo:
    """A class's information in one language (English where the entry lacks that language)."""

    display_name: str
    fact: str
    fruit: str
    fruit_name: str


def localize(label: str, info: dict | None, lang: str) -> LocalInfo:
    """The entry's names and fact in `lang`. `display_name` and `fact` are the English fields
    (what an override edits); `names` and `facts` hold the translations. Entries written before
    fruits and translations existed get the fallback fruit."""
    info = info or fallback_info(label)
    fruit = info.get("fruit") or fallback_fruit(label)
    fruit_names = info.get("fruit_names") or fallback_info(label)["fruit_names"]
    if lang == DEFAULT_LANGUAGE:
        display_name, fact = info["display_name"], info.get("fact", "")
    else:
        display_name = info.get("names", {}).get(lang) or info["display_name"]
        fact = info.get("facts", {}).get(lang) or info.get("fact", "")
    fruit_name = fruit_names.get(lang) or fruit_names.get(DEFAULT_LANGUAGE) or fruit
    return LocalInfo(display_name, fact, fruit, fruit_name)


def negotiate_language(accept_language: str | None, supported: tuple[str, ...] = LANGUAGES) -> str:
    """The best supported language of an Accept-Language header (RFC 9110 q-values; `fr-CA`
    matches `fr`), or the default."""
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.strip().lower().split("-")[0]
        # Ties keep the earlier tag: the client listed it first.
        if primary in supported and q > best_q and q > 0:
            best, best_q = primary, q
    return best
