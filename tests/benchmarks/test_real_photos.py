"""The real-photo set's manifest, its rebuild from a source repository, and the fruit-level figures."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from benchmarks.real_photos import MAX_SIDE, RealPhoto, available, converted, gather, manifest
from benchmarks.robustness import FruitAnswer, fruit_metrics
from models.scoring import expected_calibration_error
from tests.support import REPO_ROOT, encode


def test_every_row_names_a_catalog_fruit_a_source_and_a_licence():
    rows = manifest()
    assert len(rows) >= 200
    fruits = set(json.loads((REPO_ROOT / "models" / "data" / "fruits.json").read_text()))
    for r in rows:
        assert r.fruit in fruits, r.file
        assert r.file.startswith(f"{r.fruit}/") and r.file.endswith(".jpg")
        assert r.split in ("dev", "holdout")
        assert re.fullmatch(r"[0-9a-f]{40}", r.commit) and re.fullmatch(r"[0-9a-f]{64}", r.source_sha256)
        assert re.fullmatch(r"[0-9a-f]{64}", r.file_sha256) and r.license
    # Every source is one the guide lists, with its licence (the held-out sets are not among them).
    guide = (REPO_ROOT / "docs" / "real-photos.md").read_text()
    assert all(f"| {repo} |" in guide for repo in {r.source_repo for r in rows})
    assert len({r.file for r in rows}) == len(rows)
    assert len({r.source_sha256 for r in rows}) == len(rows)
    # The holdout is a quarter, chosen by the source's hash, not by eye.
    holdout = [r for r in rows if r.split == "holdout"]
    assert all(int(r.source_sha256[:8], 16) % 4 == 0 for r in holdout)
    assert 0.15 < len(holdout) / len(rows) < 0.35


def test_a_photo_is_rebuilt_from_a_mirror_and_checked_against_its_source_hash(tmp_path, monkeypatch):
    big = Image.new("RGB", (1600, 900), (200, 40, 30))
    source = encode(big, "PNG")
    mirror = tmp_path / "mirrors" / "someone+fruit"
    work = tmp_path / "work"
    work.mkdir()
    (work / "apple.png").write_bytes(source)
    (work / "pear.png").write_bytes(b"not the manifest's bytes")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "photos"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(mirror)], check=True)
    row = dict(source_repo="someone/fruit", commit=commit.strip(), license="CC0-1.0", split="dev")
    rows = [
        RealPhoto(file="apple/a.jpg", fruit="apple", source_path="apple.png",
                  source_sha256=hashlib.sha256(source).hexdigest(), file_sha256="0" * 64, **row),
        RealPhoto(file="pear/p.jpg", fruit="pear", source_path="pear.png",
                  source_sha256="f" * 64, file_sha256="0" * 64, **row),
    ]  # fmt: skip
    monkeypatch.setattr("benchmarks.real_photos.manifest", lambda: rows)
    dest = tmp_path / "photos"
    assert gather(dest, tmp_path / "mirrors") == (1, 1)  # the pear's bytes are not the manifest's
    copy = Image.open(dest / "apple" / "a.jpg")
    assert copy.format == "JPEG" and max(copy.size) == MAX_SIDE and copy.size == (1024, 576)
    found, missing = available(dest, rows)
    assert [r.file for r, _ in found] == ["apple/a.jpg"] and missing == 1


def test_a_copy_is_upright_rgb_on_white():
    rgba = Image.new("RGBA", (50, 40), (0, 0, 0, 0))
    out = Image.open(io.BytesIO(converted(encode(rgba, "PNG"))))
    assert out.mode == "RGB" and out.size == (50, 40)
    assert np.asarray(out).min() > 240  # transparency became white


def test_fruit_figures_match_a_count_by_hand():
    answers = [
        FruitAnswer("apple", ["apple", "pear"], 0.9, True, "apple"),  # known, right
        FruitAnswer("apple", ["pear", "apple"], 0.6, True, "pear"),  # known, wrong
        FruitAnswer("banana", ["lemon", "mango"], 0.3, False, None),  # unknown, not in top 5
        FruitAnswer("kiwi", ["kiwi"], 0.5, False, None),  # unknown, right fruit first
    ]
    m = fruit_metrics(answers)
    assert m["photos"] == 4
    assert m["fruit top-1"] == pytest.approx(2 / 4)
    assert m["fruit in top-5"] == pytest.approx(3 / 4)
    assert (m["known and right"], m["known but wrong"], m["unknown"]) == (0.25, 0.25, 0.5)
    expected = expected_calibration_error(np.array([0.9, 0.6, 0.3, 0.5]), np.array([1.0, 0.0, 0.0, 1.0]))
    assert m["fruit ECE"] == pytest.approx(expected)
