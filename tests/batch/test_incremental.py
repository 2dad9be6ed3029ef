"""Incremental refresh with the real job: reuse unchanged features, featurize new, drop deleted."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.config import JobConfig
from batch.incremental import _previous_version
from batch.job import run_job
from models.augment import AugmentSpec
from models.bundle import read_bundle
from models.featurizer import FeaturizerSpec, build_featurizer, featurize_bytes
from tests.support import TEST_IMAGE_SIZE, TEST_WEIGHTS, copy_photos, fixture_photos

LABELS = ["Apple Red 1", "Banana", "Cherry 1"]
VIEWS = 1  # augmented views per photo: reused with their photo
POISON = 7.0  # no ResNet50 feature vector is constant: a row holding it was reused, not recomputed


def all_features_of(root: Path, version: str) -> pd.DataFrame:
    files = sorted((root / "versions" / version / "features").glob("*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files])


def features_of(root: Path, version: str) -> pd.DataFrame:
    """The photos' own rows (view 0), by URI."""
    frame = all_features_of(root, version)
    return frame[frame["view"] == 0].set_index("uri").sort_index()


def poison_row(root: Path, version: str, uri: str) -> None:
    for f in (root / "versions" / version / "features").glob("*.parquet"):
        frame = pq.read_table(f).to_pandas()
        if uri in set(frame["uri"]):
            hit = frame["uri"] == uri
            frame.loc[hit, "features"] = pd.Series(
                [np.full(2048, POISON, dtype=np.float32)] * int(hit.sum()), index=frame.index[hit]
            )
            pq.write_table(pa.Table.from_pandas(frame, schema=pq.read_schema(f), preserve_index=False), f)
            return
    raise AssertionError(f"{uri} not in the features of {version}")


@pytest.mark.spark
@pytest.mark.slow
def test_incremental_refresh_reuses_unchanged_and_refits(spark, tmp_path):
    photos = copy_photos(tmp_path / "photos", "Training", LABELS, 8)
    root = tmp_path / "bundles"
    spec = FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE)

    def config(incremental: bool) -> JobConfig:
        return JobConfig(
            input_uri=str(photos),
            output_uri=str(root),
            spec=spec,
            images_per_partition=8,
            incremental=incremental,
            augment=AugmentSpec(views=VIEWS),
        )

    first = run_job(config(incremental=True), spark)  # nothing to reuse yet: a full run
    assert first.manifest.refresh.reused == 0
    assert first.manifest.refresh.featurized == 24

    kept = str(photos / LABELS[0] / fixture_photos("Training", LABELS[0])[0].name)
    poison_row(root, first.version, kept)
    deleted = sorted((photos / LABELS[1]).glob("*.jpg"))[-2:]
    for path in deleted:
        path.unlink()
    changed = sorted((photos / LABELS[2]).glob("*.jpg"))[0]
    changed.write_bytes(fixture_photos("Training", LABELS[2])[30].read_bytes())
    added = [
        *copy_photos_named(photos, LABELS[2], range(8, 11)),
        *copy_photos_named(photos, "Kiwi", range(2)),
    ]  # a class the first run never saw

    second = run_job(config(incremental=True), spark)
    assert second.manifest.refresh.model_dump() == {
        "incremental": True,
        "previous_version": first.version,
        "reused": 21,
        "featurized": 6,
        "dropped": 2,
        "note": "",
    }

    listed = sorted(str(p) for p in photos.rglob("*.jpg"))
    old, new = features_of(root, first.version), features_of(root, second.version)
    assert list(new.index) == listed
    assert np.all(new.loc[kept, "features"] == POISON)  # carried over, not recomputed
    every = all_features_of(root, second.version)
    assert every.groupby("uri")["view"].apply(sorted).tolist() == [list(range(VIEWS + 1))] * len(listed)
    kept_views = every[(every["uri"] == kept) & (every["view"] > 0)]["features"]
    assert all(np.all(v == POISON) for v in kept_views)  # its views came along, not recomputed
    unchanged = [u for u in listed if u in old.index and u != str(changed) and u != kept]
    assert len(unchanged) == 20
    for uri in unchanged:
        assert np.array_equal(new.loc[uri, "features"], old.loc[uri, "features"])

    # New and changed photos: exactly what the model gives for their current bytes.
    fresh = [str(changed), *map(str, added)]
    featurizer = build_featurizer(spec)
    expected, errors = featurize_bytes(featurizer, [Path(u).read_bytes() for u in fresh])
    assert errors == [None] * len(fresh)
    got = np.stack(new.loc[fresh, "features"].to_numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(new.loc[str(changed), "features"], old.loc[str(changed), "features"])

    # Centring refitted on the refreshed set (poisoned row included), in float64 numpy, on
    # the L2-normalised rows.
    x = np.stack(every["features"].to_numpy()).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    bundle = read_bundle(str(root))
    assert bundle.version == second.version
    np.testing.assert_allclose(bundle.scaler_mean, x.mean(axis=0), rtol=1e-6, atol=1e-6)
    assert sorted(bundle.sources[bundle.views == 0].tolist()) == listed
    assert "Kiwi" in bundle.classes.tolist()


def copy_photos_named(photos: Path, label: str, indices: range) -> list[Path]:
    (photos / label).mkdir(exist_ok=True)
    sources = fixture_photos("Training", label)
    out = []
    for i in indices:
        out.append(photos / label / sources[i].name)
        shutil.copy(sources[i], out[-1])
    return out


@pytest.mark.spark
@pytest.mark.slow
def test_a_photo_rewritten_with_its_size_and_mtime_kept_is_featurized_again(spark, tmp_path):
    from PIL import Image

    # Uncompressed PNGs of one size have one file size: a rewrite cannot be told by mtime+size.
    photos = tmp_path / "photos"
    sources = {label: fixture_photos("Training", label)[:3] for label in ("Banana", "Kiwi")}
    for label, paths in sources.items():
        (photos / label).mkdir(parents=True)
        for p in paths:
            Image.open(p).convert("RGB").resize((64, 64)).save(
                photos / label / f"{p.stem}.png", compress_level=0
            )
    root = tmp_path / "bundles"
    config = JobConfig(
        input_uri=str(photos),
        output_uri=str(root),
        spec=FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE),
        incremental=True,
        augment=AugmentSpec(views=0),
    )
    first = run_job(config, spark)
    target = sorted((photos / "Banana").glob("*.png"))[0]
    donor = sorted((photos / "Kiwi").glob("*.png"))[0]
    before = target.stat()
    target.write_bytes(donor.read_bytes())  # a kiwi's pixels under the banana's name
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    second = run_job(config, spark)
    assert (second.manifest.refresh.reused, second.manifest.refresh.featurized) == (5, 1)
    new = features_of(root, second.version)
    # Its features now are the donor's (same bytes, same model), not the stale banana's.
    np.testing.assert_allclose(new.loc[str(target), "features"], new.loc[str(donor), "features"], atol=1e-5)
    assert not np.allclose(
        new.loc[str(target), "features"], features_of(root, first.version).loc[str(target), "features"]
    )


def test_a_previous_version_of_an_older_bundle_format_means_a_full_run(tmp_path):
    """An upgrade must not break a scheduled incremental refresh: the old version is reported
    and every photo is featurized again."""
    version = "20260101T000000Z-abcdef"
    (tmp_path / "versions" / version).mkdir(parents=True)
    (tmp_path / "versions" / version / "manifest.json").write_text('{"format_version": 3}')
    (tmp_path / "CURRENT").write_text(version)
    config = JobConfig(input_uri=str(tmp_path / "photos"), output_uri=str(tmp_path), incremental=True)
    found, manifest, note = _previous_version(config)
    assert (found, manifest) == (version, None)
    assert "bundle format 3" in note and note.endswith("full run")
