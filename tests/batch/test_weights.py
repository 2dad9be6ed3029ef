"""Weights resolved once on the driver and shipped: executors featurize from Spark's copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch.featurize import FeaturizeError, featurize_images, featurize_outcome
from batch.weights import ShippedWeights, ship_weights
from models.featurizer import FeaturizerSpec, build_featurizer, featurize_bytes
from tests.support import TEST_IMAGE_SIZE, fixture_photos


@pytest.fixture(scope="module")
def reference():
    """The model the weights file holds, built here independently of the job's code path."""
    return build_featurizer(FeaturizerSpec("resnet50", "random:0", TEST_IMAGE_SIZE))


def _photos_frame(spark, photos: list[Path]):
    rows = pd.DataFrame({"uri": [str(p) for p in photos], "label": "Kiwi", "etag": "e"})
    return spark.createDataFrame(rows, schema="uri string, label string, etag string")


@pytest.mark.spark
@pytest.mark.slow
def test_executors_featurize_with_the_drivers_copy_after_the_store_is_gone(spark, reference, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    reference._model.save_weights(store / "resnet.weights.h5")
    spec = FeaturizerSpec("resnet50", str(store / "resnet.weights.h5"), TEST_IMAGE_SIZE)
    photos = fixture_photos("Training", "Kiwi")[:3]
    shipped = ship_weights(spark, spec)
    shutil.rmtree(store)  # from here on, only Spark's copy exists
    rows = featurize_images(_photos_frame(spark, photos), spec, threads=1, batch_size=8, weights=shipped)
    rows = rows.toPandas().sort_values("uri")
    assert shipped.sha256 == reference.weights_sha256
    assert rows["weights_sha256"].tolist() == [reference.weights_sha256] * 3
    expected, _ = featurize_bytes(reference, [p.read_bytes() for p in photos])
    np.testing.assert_allclose(np.stack(rows["features"].to_list()), expected, atol=1e-4)


@pytest.mark.spark
@pytest.mark.slow
def test_a_shipped_copy_that_does_not_match_the_drivers_digest_fails_the_task(spark, reference, tmp_path):
    reference._model.save_weights(tmp_path / "resnet.weights.h5")
    spec = FeaturizerSpec("resnet50", str(tmp_path / "resnet.weights.h5"), TEST_IMAGE_SIZE)
    shipped = ship_weights(spark, spec)
    forged = ShippedWeights(name=shipped.name, sha256="0" * 64)
    photos = _photos_frame(spark, fixture_photos("Training", "Kiwi")[:1])
    rows = featurize_images(photos, spec, threads=1, batch_size=8, weights=forged)
    with pytest.raises(Exception, match=f"WeightsMismatch: .*{reference.weights_sha256}, expected 0{{64}}"):
        rows.toPandas()


def test_nothing_is_shipped_for_random_weights_or_pixels():
    assert ship_weights(None, FeaturizerSpec("resnet50", "random:3", TEST_IMAGE_SIZE)) is None
    assert ship_weights(None, FeaturizerSpec.parse("pixels:8", "none", None)) is None


def test_features_made_with_other_weights_than_the_drivers_are_refused():
    status = pd.DataFrame(
        {
            "uri": ["a", "b"],
            "view": [0, 0],
            "error_code": [None, None],
            "error": [None, None],
            "weights_sha256": ["a" * 64] * 2,
            "precision": ["fp32"] * 2,
        }
    )
    assert featurize_outcome(status, "a" * 64).weights_sha256 == "a" * 64
    with pytest.raises(FeaturizeError, match="the driver resolved " + "b" * 64):
        featurize_outcome(status, "b" * 64)
