"""The real job in local Spark on real photos: artifacts, manifest, skipped files, atomicity."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from batch.cli import build_parser, config_from_args
from batch.config import DEFAULT_AUGMENT_VIEWS, JobConfig
from batch.job import run_job
from models.augment import AugmentSpec
from models.bundle import ARRAY_FILES, read_bundle
from models.featurizer import FeaturizerSpec
from models.preprocess import PREPROCESSING_VERSION
from tests.conftest import LABELS, OFF_CENTRE, TRAIN_PER_CLASS
from tests.support import TEST_IMAGE_SIZE, TEST_WEIGHTS, copy_photos


def _vdir(root):
    return root / "versions" / (root / "CURRENT").read_text().strip()


def test_bundle_files_and_shapes(job_run):
    root, result = job_run
    vdir = _vdir(root)
    assert vdir.name == result.version
    for name in ARRAY_FILES:
        assert (vdir / f"{name}.npy").is_file(), name
    views = 1 + DEFAULT_AUGMENT_VIEWS  # the photo and its augmented views
    n = (len(LABELS) * TRAIN_PER_CLASS + 1) * views  # + the off-centre photo
    k = result.manifest.pca.k
    assert np.load(vdir / "embeddings.npy").shape == (n, k)
    assert np.load(vdir / "pca_components.npy").shape == (k, 2048)
    assert np.load(vdir / "scaler_mean.npy").shape == (2048,)
    assert np.load(vdir / "thresholds.npy").shape == (len(LABELS),)
    assert np.load(vdir / "classes.npy").tolist() == sorted(LABELS)
    # No pickles anywhere: every array loads with allow_pickle=False.
    for f in vdir.glob("*.npy"):
        np.load(f, allow_pickle=False)
    features = pq.read_table(vdir / "features").to_pandas()
    assert len(features) == n
    assert {len(v) for v in features["features"]} == {2048}
    assert set(features["label"]) == set(LABELS)


def test_augment_adds_exactly_n_labelled_views_per_photo_and_records_the_spec(job_run, dataset):
    root, result = job_run
    bundle = read_bundle(str(root))
    n = DEFAULT_AUGMENT_VIEWS
    assert n >= 1  # the default build is the robust one
    photos = sorted((dataset / "Training").glob("*/*.jpg"))
    good = [str(p) for p in photos if "corrupt" not in p.name]
    for uri in good:
        rows = np.flatnonzero(bundle.sources == uri)
        assert sorted(bundle.views[rows].tolist()) == list(range(n + 1)), uri
        assert set(bundle.labels[rows].tolist()) == {uri.split("/")[-2]}
    assert len(bundle.sources) == len(good) * (n + 1)
    m = bundle.manifest
    assert m.augment == AugmentSpec(views=n)
    assert m.counts.model_dump() == {
        "listed": len(photos),
        "featurized": len(good),
        "skipped": 1,
        "classes": len(LABELS),
        "rows": len(good) * (n + 1),
        "augmented_rows": len(good) * n,
        "feedback": 0,
    }
    assert m.preprocessing.version == PREPROCESSING_VERSION
    # The views are different pictures, not copies: no view equals its photo's embedding.
    rows = list(zip(bundle.sources, bundle.views, bundle.embeddings, strict=True))
    originals = {source: e for source, v, e in rows if v == 0}
    for source, v, e in rows:
        if v:
            assert not np.allclose(e, originals[source], atol=1e-3)


def test_augment_flag_sets_the_views_and_seed():
    flags = ["--input", "i", "--output", "o", "--augment", "5", "--augment-seed", "3"]
    args = build_parser().parse_args(flags)
    assert config_from_args(args).augment == AugmentSpec(views=5, seed=3)
    args = build_parser().parse_args(["--input", "i", "--output", "o"])
    assert config_from_args(args).augment.views == DEFAULT_AUGMENT_VIEWS
    with pytest.raises(ValueError, match="augment"):
        AugmentSpec(views=-1)


def test_labels_come_from_the_parent_folder(job_run):
    root, _ = job_run
    vdir = _vdir(root)
    labels = np.load(vdir / "labels.npy")
    sources = np.load(vdir / "sources.npy")
    for label, source in zip(labels, sources, strict=True):
        assert source.split("/")[-2] == label


def test_manifest_records_what_was_done(job_run, dataset):
    root, result = job_run
    m = json.loads((_vdir(root) / "manifest.json").read_text())
    assert m["version"] == result.version
    assert m["input_uri"] == str(dataset / "Training")
    assert m["featurizer"] == {
        "kind": "resnet50",
        "weights": TEST_WEIGHTS,
        "image_size": TEST_IMAGE_SIZE,
        "precision": "fp32",
    }
    assert m["weights"]["random"] is True and len(m["weights"]["sha256"]) == 64
    off_centre = OFF_CENTRE.split("/")[0]
    assert m["class_counts"] == {label: TRAIN_PER_CLASS + (label == off_centre) for label in LABELS}
    assert m["counts"]["skipped"] == 1
    ratios = np.asarray(m["pca"]["explained_variance_ratio"])
    assert np.all(np.diff(ratios) <= 1e-9)  # ordered by variance
    k = m["pca"]["k"]
    # Default K: the fewest components reaching the 93% target.
    assert m["pca"]["variance_target"] == 0.93
    assert ratios[:k].sum() >= 0.93 - 1e-6 > ratios[: k - 1].sum()
    for lib in ("numpy", "keras", "pyspark", "pillow"):
        assert lib in m["libraries"]
    assert set(m["files"]) >= {f"{n}.npy" for n in ARRAY_FILES}
    assert m["created_at"].endswith("+00:00")


def test_corrupt_photo_is_skipped_and_reported(job_run):
    _, result = job_run
    [skipped] = result.skipped
    assert skipped.uri.endswith("Kiwi/corrupt_truncated.jpg")
    assert skipped.code == "corrupt_image"
    # README.txt is not a photo: never listed, so never "skipped".
    assert result.manifest.counts.listed == len(LABELS) * TRAIN_PER_CLASS + 2  # corrupt, off-centre


def test_scaler_and_pca_match_numpy_on_the_stored_features(job_run):
    """Spark ML's fit, checked against an independent numpy computation."""
    root, result = job_run
    b = read_bundle(str(root))
    feats = pq.read_table(_vdir(root) / "features").to_pandas().sort_values("uri")
    x = np.stack(feats["features"].to_numpy()).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # each row L2-normalised, then centred
    np.testing.assert_allclose(b.scaler_mean, x.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(b.scaler_scale, np.ones(x.shape[1]))
    xs = x - b.scaler_mean
    _, s, vt = np.linalg.svd(xs - xs.mean(0), full_matrices=False)
    k = result.manifest.pca.k
    ratios = (s**2 / (s**2).sum())[:k]
    np.testing.assert_allclose(result.manifest.pca.explained_variance_ratio[:k], ratios, atol=1e-5)
    # pca_components = metric @ (weights x unit components); plain_map undoes both, so
    # plain_map^T @ pca_components are the unit PCA components. Same subspace (signs may flip):
    # |cosine| of matching components ~ 1 where well separated.
    plain = b.plain_map.T @ b.pca_components
    np.testing.assert_allclose(np.linalg.norm(plain, axis=1), 1.0, atol=1e-6)
    cos = np.abs((plain[:3] * vt[:3]).sum(1))
    assert np.all(cos > 0.999)
    # Each component is weighted: those spreading wider than the ceiling rank's component are
    # shrunk to its spread.
    rank = result.manifest.pca.spread_ceiling_rank
    assert 0 < rank <= k
    weights = np.asarray(result.manifest.pca.component_weights)
    np.testing.assert_allclose(weights, np.minimum(1, s[rank - 1] / s[:k]), rtol=1e-4)
    # The metric, recomputed here from the photos' weighted coordinates (not their views):
    # within-class covariance U diag(l) U^T -> U diag(1 / sqrt(1 + A l / median l)) U^T.
    weighted = xs @ (plain * weights[:, None]).T
    photos = (feats["view"] == 0).to_numpy()
    labels = feats["label"].to_numpy()[photos]
    rows = weighted[photos]
    centred = rows - np.stack([rows[labels == lbl].mean(0) for lbl in labels])
    spread, u = np.linalg.eigh(np.cov(centred.T, bias=True))
    shrink = result.manifest.pca.within_class_shrink
    assert shrink > 0
    metric = u @ np.diag(1 / np.sqrt(1 + shrink * spread / np.median(spread))) @ u.T
    np.testing.assert_allclose(b.pca_components, metric @ (plain * weights[:, None]), atol=1e-5)


def test_components_flag_and_catalog_override(spark, dataset, tmp_path):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"Kiwi": {"fact": "Our own fact."}, "Banana": {"display_name": "Plátano"}}))
    args = build_parser().parse_args(
        [
            "--input",
            str(dataset / "Training"),
            "--output",
            str(tmp_path / "out"),
            "--weights",
            TEST_WEIGHTS,
            "--image-size",
            str(TEST_IMAGE_SIZE),
            "--components",
            "5",
            "--catalog",
            str(catalog),
            "--images-per-partition",
            "48",
        ]
    )
    result = run_job(config_from_args(args), spark)
    bundle = read_bundle(str(tmp_path / "out"))
    assert bundle.pca_components.shape == (5, 2048)
    assert result.manifest.pca.chosen_by == "--components"
    assert bundle.catalog["Kiwi"]["fact"] == "Our own fact."
    assert bundle.catalog["Kiwi"]["names"]["fr"] == "Kiwi"  # untouched fields kept
    assert bundle.catalog["Banana"]["display_name"] == "Plátano"
    assert json.loads((_vdir(tmp_path / "out") / "catalog.json").read_text()) == bundle.catalog


def test_nested_folders_and_uppercase_extensions(spark, tmp_path):
    src = copy_photos(tmp_path / "in" / "2024" / "batch-a", "Training", ["Lemon", "Limes"], 4)
    shutil.copy(next((src / "Lemon").glob("*.jpg")), src / "Lemon" / "EXTRA.JPG")
    config = JobConfig(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE),
        components=2,
    )
    result = run_job(config, spark)
    assert result.manifest.class_counts == {"Lemon": 5, "Limes": 4}


def test_failed_job_leaves_the_current_version_in_place(spark, job_run, tmp_path):
    root = tmp_path / "artifacts"
    shutil.copytree(job_run[0], root)
    before = (root / "CURRENT").read_text()
    versions_before = sorted(p.name for p in (root / "versions").iterdir())
    empty = tmp_path / "empty"
    empty.mkdir()
    config = JobConfig(str(empty), str(root), FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE))
    with pytest.raises(Exception, match="no .jpg"):
        run_job(config, spark)
    bad = tmp_path / "bad" / "Kiwi"
    bad.mkdir(parents=True)
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    config = JobConfig(
        str(tmp_path / "bad"), str(root), FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE)
    )
    with pytest.raises(Exception, match="none of the 1 photos"):
        run_job(config, spark)
    assert (root / "CURRENT").read_text() == before
    assert sorted(p.name for p in (root / "versions").iterdir()) == versions_before
    read_bundle(str(root))  # still valid
