"""The bundle: round trip, checksums, validation, and the pointer written last."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from models import manifest as mf
from models.augment import AugmentSpec
from models.bundle import (
    ArtifactBundle,
    BundleError,
    current_version,
    list_versions,
    new_version_id,
    prune_versions,
    publish,
    read_bundle,
    read_manifest,
    write_version,
)
from models.featurizer import FeaturizerSpec


def make_manifest(version: str, k: int, d: int, rows: int) -> mf.Manifest:
    """The smallest manifest that passes validation, for arrays made up by a test."""
    return mf.Manifest(
        version=version,
        created_at="2026-01-01T00:00:00+00:00",
        input_uri="/x",
        featurizer=FeaturizerSpec("pixels", "none", 2),
        weights=mf.Weights(spec="none", sha256="0" * 64, random=False),
        preprocessing=mf.Preprocessing(function="models.preprocess.preprocess_image", version="test"),
        augment=AugmentSpec(views=1),
        feature_dim=d,
        scaler=mf.Scaler(fitted_with="test"),
        pca=mf.Pca(
            k=k,
            chosen_by="test",
            explained_variance_ratio=[0.5] * k,
            explained_variance_kept=1.0,
            fitted_with="test",
            spread_ceiling_rank=0,
            component_weights=[1.0] * k,
            within_class_shrink=0.0,
        ),
        calibration=mf.Calibration(
            rule="test",
            percentile=95,
            margin=1.0,
            temperature=1.0,
            temperature_fitted_on="test",
            held_out_ece=0.0,
            min_confidence=0.5,
            view_distance_factor=1.0,
        ),
        counts=mf.Counts(listed=3, featurized=3, skipped=0, classes=2, rows=rows, augmented_rows=2),
        class_counts={"A": 1, "B": 2},
        features=mf.FeatureFiles(files=[], rows=rows),
        stages={},
        spark=mf.SparkRun(master="local[1]", parallelism=1, version="test"),
        libraries={},
        probe=mf.Probe(fruits=2, reference_rows=rows, c=1.0, trained_with="test", min_confidence=0.5),
    )


def make_bundle(version: str | None = None, k: int = 3, d: int = 8) -> ArtifactBundle:
    rng = np.random.default_rng(0)
    labels = np.array(["A", "A", "B", "B", "B"])
    return ArtifactBundle(
        manifest=make_manifest(version or new_version_id(), k, d, len(labels)),
        scaler_mean=rng.normal(size=d),
        scaler_scale=np.abs(rng.normal(size=d)),
        pca_components=rng.normal(size=(k, d)),
        embeddings=rng.normal(size=(5, k)).astype("f4"),
        labels=labels,
        sources=np.array([f"/x/{lbl}/{i // 2}.jpg" for i, lbl in enumerate(labels)]),
        views=np.array([0, 1, 0, 1, 0], dtype=np.int16),
        classes=np.array(["A", "B"]),
        thresholds=np.array([1.0, 2.0]),
        plain_thresholds=np.array([1.5, 2.5]),
        plain_map=np.eye(k),
        probe_fruits=np.array(["a", "b"]),  # the fallback fruits of classes A and B
        probe_coef=rng.normal(size=(2, k)),
        probe_intercept=np.zeros(2),
        catalog={"A": {"display_name": "Apple"}, "B": {"display_name": "Banana"}},
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


def test_a_version_is_written_past_the_fault_points_in_their_order(tmp_path, monkeypatch):
    # tests/batch/test_faults.py kills the job at the first array and after the catalog, not
    # at each array between: the points between must come from the same loop, in this order.
    from models import bundle as bundle_module
    from models.faults import POINTS

    seen: list[str] = []
    monkeypatch.setattr(bundle_module, "checkpoint", seen.append)
    b = make_bundle()
    write_version(str(tmp_path), b)
    arrays = [f"wrote:{name}.npy" for name in b.arrays()]
    assert seen == [*arrays, "wrote:catalog.json", "wrote:manifest.json"]
    written = [p for p in POINTS if p.startswith("wrote:") and p != "wrote:features"]
    assert [p for p in seen if p in POINTS] == written
    assert seen.index("wrote:scaler_mean.npy") == 0 < seen.index("wrote:embeddings.npy")


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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["pca"].pop("k"), "pca.k: Field required"),
        (lambda m: m.__setitem__("calibrations", m.pop("calibration")), "calibration: Field required"),
        (lambda m: m["counts"].__setitem__("rows", "many"), "counts.rows"),
        (lambda m: m.__setitem__("version", "other"), "its manifest names version other"),
    ],
)
def test_a_manifest_that_does_not_match_the_types_is_refused_at_load(tmp_path, change, message):
    """A renamed or missing field fails when the bundle is read, not when a request needs it."""
    b = make_bundle()
    vdir = write_version(str(tmp_path), b)
    manifest = json.loads(Path(vdir, "manifest.json").read_text())
    change(manifest)
    Path(vdir, "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=re.escape(message)):
        read_bundle(str(tmp_path), b.version)


def test_a_catalog_without_every_class_is_refused(tmp_path):
    b = make_bundle()
    b.catalog = {"A": {"display_name": "Apple"}}
    with pytest.raises(BundleError, match="catalog lacks a class"):
        write_version(str(tmp_path), b)


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


def test_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    """A service running as another user must be able to read the bundle the job wrote."""
    umask = os.umask(0)
    os.umask(umask)
    b = make_bundle()
    vdir = write_version(str(tmp_path), b)
    for name in ("manifest.json", "embeddings.npy", "catalog.json"):
        assert Path(vdir, name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_versions_are_listed_under_a_root_that_itself_contains_versions(tmp_path):
    root = tmp_path / "versions" / "fruit"
    old, new = make_bundle("20260101T000000Z-aaaaaa"), make_bundle("20260102T000000Z-bbbbbb")
    for b in (old, new):
        write_version(str(root), b)
    assert list_versions(str(root)) == [old.version, new.version]
    assert list_versions(f"file://{root}") == [old.version, new.version]
    prune_versions(str(root), keep_versions=1, keep=new.version)
    assert list_versions(str(root)) == [new.version]


@pytest.mark.parametrize("bad", [".", "..", ".hidden", "-flag", "a/b", "", "x" * 101])
def test_a_version_id_is_one_plain_path_segment(tmp_path, bad):
    (tmp_path / "CURRENT").write_text(bad + "\n")
    with pytest.raises(BundleError, match="invalid version id"):
        current_version(str(tmp_path))
    with pytest.raises(BundleError):
        read_bundle(str(tmp_path))
    with pytest.raises(BundleError, match="not a version id"):
        read_manifest(str(tmp_path), bad)


def test_read_errors_name_the_file_but_no_path(tmp_path):
    b = make_bundle()
    write_version(str(tmp_path), b)
    publish(str(tmp_path), b.version)
    (tmp_path / "versions" / b.version / "thresholds.npy").unlink()
    with pytest.raises(BundleError) as refused:
        read_bundle(str(tmp_path))
    assert "thresholds.npy" in str(refused.value)
    assert str(tmp_path) not in str(refused.value)


def test_a_catalog_with_wrong_types_is_refused_at_load(tmp_path):
    b = make_bundle()
    b.catalog["A"]["names"] = {"en": 7}  # /v1/classes would answer 500 with this
    write_version(str(tmp_path), b)
    with pytest.raises(BundleError, match="invalid catalog.json"):
        read_bundle(str(tmp_path), b.version)
