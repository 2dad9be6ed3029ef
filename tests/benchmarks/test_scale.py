"""benchmarks.scale's input: n photos spanning every class, jittered copies where the folder has fewer."""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from benchmarks.scale import build_input, source_photos
from tests.support import TEST_DATA


def _tree(folder):
    return sorted(p for p in folder.rglob("*.jpg"))


def test_fewer_photos_than_asked_are_made_up_by_distinct_decodable_copies(tmp_path):
    photos = source_photos(TEST_DATA)
    n = len(photos) * 2 + 3
    folder, copies = build_input(photos, n, tmp_path, seed=1)
    made = _tree(folder)
    assert copies == n - len(photos) and len(made) == n
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in made}
    assert len(digests) == n  # every copy is a new file, not a duplicate of its source
    assert {p.parent.name for p in made} == {p.parent.name for p in photos}
    copy = next(p for p in made if p.name.startswith("jitter"))
    source = folder / copy.parent.name / copy.name.split("_", 1)[1]
    with Image.open(io.BytesIO(copy.read_bytes())) as a, Image.open(source) as b:
        assert a.size == b.size
    # The same (n, seed) is reused, not rebuilt.
    assert build_input(photos, n, tmp_path, seed=1) == (folder, copies)


def test_a_smaller_run_spans_every_class_without_copies(tmp_path):
    photos = source_photos(TEST_DATA)
    classes = {p.parent.name for p in photos}
    folder, copies = build_input(photos, len(classes) * 2, tmp_path, seed=0)
    assert copies == 0
    assert {p.parent.name for p in _tree(folder)} == classes
