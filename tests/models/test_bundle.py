"""The bundle: round trip, checksums, validation, and the pointer written last."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.bundle import (
    ArtifactBundle,
    BundleError,
    current_version,
    list_versions,
    new_version_id,
    publish,
    read_bundle,
    write_version,
)


def make_bundle(version: str | None = None, k: int = 3, d: int = 8) -> ArtifactBundle:
    rng = np.random.default_rng(0)
    labels = np.array(["A", "A", "B", "B", "B"])
    return ArtifactBundle(
        manifest={"version": version or new_version_id(), "pca": {"k": k}, "feature_dim": d},
        scaler_mean=rng.normal(size=d),
        scaler_scale=np.abs(rng.normal(size=d)),
        pca_components=rng.normal(size=(k, d)),
        embeddings=rng.normal(size=(5, k)).astype("f4"),
        labels=labels,
        sources=np.array([f"/x/{lbl}/{i // 2}.jpg" for i, lbl in enumerate(labels)]),
        views=np.array([0, 1, 0, 1, 0], dtype=np.int16),
        classes=np.array(["A", "B"]),
        thresholds=np.array([1.0, 2.0]),
        catalog={"A": {"display_name": "Apple"}},
    )


def test_round_trip_and_pointer(tmp_path):
    b = make_bundle()
    write_version(str(tmp_path), b)
    assert current_version(str(tmp_path)) is None  # written but not yet published
    with pytest.raises(BundleError, match="no bundle published"):
        read_bundle(str(tmp_path))
    publish(str(tmp_path), b.version)
    back = read_bundle(str(tmp_path))
    assert back.version == b.version
    for name, arr in b.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), arr)
    assert back.catalog == b.catalog
    assert list_versions(str(tmp_path)) == [b.version]


def test_corrupted_file_is_refused(tmp_path):
    b = make_bundle()
    vdir = write_version(str(tmp_path), b)
    with open(f"{vdir}/embeddings.npy", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="checksum mismatch in embeddings.npy"):
        publish(str(tmp_path), b.version)
    assert current_version(str(tmp_path)) is None


def test_missing_file_is_refused(tmp_path):
    b = make_bundle()
    vdir = write_version(str(tmp_path), b)
    Path(vdir, "thresholds.npy").unlink()
    with pytest.raises(BundleError, match="thresholds.npy"):
        read_bundle(str(tmp_path), b.version)


def test_inconsistent_shapes_are_refused(tmp_path):
    b = make_bundle()
    b.views = np.zeros(3, dtype=np.int16)
    with pytest.raises(BundleError, match="views"):
        write_version(str(tmp_path), b)


def test_a_bundle_of_another_format_is_refused_with_a_rebuild_hint(tmp_path):
    b = make_bundle()
    vdir = write_version(str(tmp_path), b)
    manifest = json.loads(Path(vdir, "manifest.json").read_text())
    manifest["format_version"] = 1
    Path(vdir, "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format 1.*rebuild"):
        read_bundle(str(tmp_path), b.version)


def test_photo_idx_groups_a_photos_views():
    b = make_bundle()
    idx = b.photo_idx
    assert idx[0] == idx[1] and idx[2] == idx[3]  # a photo and its view share an id
    assert len(set(idx.tolist())) == 3


def test_version_ids_sort_by_time():
    from datetime import UTC, datetime

    a = new_version_id(datetime(2026, 1, 1, tzinfo=UTC))
    b = new_version_id(datetime(2026, 1, 2, tzinfo=UTC))
    assert a < b and a.startswith("20260101T000000Z-")
