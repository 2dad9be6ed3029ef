"""batch.fit against Spark ML's own Normalizer + StandardScaler + PCA on the same DataFrame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.ml.feature import PCA, Normalizer, StandardScaler
from pyspark.ml.functions import array_to_vector

from batch.fit import _ROWS_PER_PRODUCT, _rows, component_weights, fit_projection, within_class_metric


@pytest.mark.spark
def test_fit_equals_spark_ml_scaler_and_pca(spark):
    rng = np.random.default_rng(3)
    # More rows per task than one float64 block (batch.fit._ROWS_PER_PRODUCT), over more partitions
    # than cores, so block flushes, the per-core coalesce and the tree reduce are all compared.
    n, d, k = 2600, 24, 6
    # Correlated columns with distinct variances, one constant column, positive like ReLU outputs.
    x = np.abs(rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * rng.uniform(0.5, 3, d) + 2)
    x[:, 5] = 1.5
    frame = spark.createDataFrame(
        pd.DataFrame({"features": list(x.astype(np.float32))}), "features array<float>"
    ).repartition(7)

    ours = fit_projection(frame, n_rows=n, dim=d, components=k, variance=0.9, max_components=d)

    raw = frame.select(array_to_vector("features").alias("raw"))
    vectors = Normalizer(p=2.0, inputCol="raw", outputCol="v").transform(raw)
    scaler = StandardScaler(withMean=True, withStd=False, inputCol="v", outputCol="s").fit(vectors)
    pca = PCA(k=d, inputCol="s").fit(scaler.transform(vectors))
    np.testing.assert_allclose(ours.mean, scaler.mean.toArray(), rtol=1e-6)
    np.testing.assert_array_equal(ours.scale, np.ones(d))
    np.testing.assert_allclose(
        ours.explained_variance, pca.explainedVariance.toArray(), rtol=1e-6, atol=1e-12
    )
    theirs = pca.pc.toArray()[:, :k].T
    signs = np.sign((ours.components * theirs).sum(1))
    np.testing.assert_allclose(ours.components, theirs * signs[:, None], rtol=1e-6, atol=1e-6)
    assert ours.k == k and ours.chosen_by == "--components"
    assert n / 2 > _ROWS_PER_PRODUCT


def test_rows_must_all_have_dim_values():
    ok = pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32()))
    np.testing.assert_array_equal(_rows(ok, 2), [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="2 values"):
        _rows(pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32())), 2)


@pytest.mark.spark
def test_k_by_variance_and_deterministic_signs(spark):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 10)) @ np.diag([5, 4, 3, 1, 1, 0.5, 0.2, 0.1, 0.1, 0.1])
    frame = spark.createDataFrame(
        pd.DataFrame({"features": list(x.astype(np.float32))}), "features array<float>"
    )
    a = fit_projection(frame, n_rows=200, dim=10, components=None, variance=0.5, max_components=10)
    b = fit_projection(
        frame.repartition(4), n_rows=200, dim=10, components=None, variance=0.5, max_components=10
    )
    assert np.cumsum(a.explained_variance)[a.k - 1] >= 0.5 > np.cumsum(a.explained_variance)[a.k - 2]
    np.testing.assert_allclose(a.components, b.components, atol=1e-9)  # same signs, any partitioning
    assert (a.components[np.arange(a.k), np.abs(a.components).argmax(1)] > 0).all()


def test_component_weights_shrink_the_spread_above_the_ceiling_rank():
    eigenvalues = np.array([16.0, 9.0, 4.0, 1.0, 0.25])
    # Component 3's variance (4) is the ceiling: the first two are shrunk to it, sd 4 -> 2, 3 -> 2.
    np.testing.assert_allclose(component_weights(eigenvalues, 5, 3), [0.5, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(component_weights(eigenvalues, 4, 1), [1, 1, 1, 1])
    for off in (0, 5, 9):  # none, or a rank beyond K: plain coordinates
        np.testing.assert_array_equal(component_weights(eigenvalues, 4, off), np.ones(4))


@pytest.mark.spark
def test_embedding_map_scales_each_component_by_its_weight(spark):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 8)) @ np.diag([6, 3, 2, 1, 1, 0.5, 0.3, 0.1])
    frame = spark.createDataFrame(
        pd.DataFrame({"features": list(x.astype(np.float32))}), "features array<float>"
    )
    fit = fit_projection(
        frame, n_rows=300, dim=8, components=6, variance=0.9, max_components=8, ceiling_rank=3
    )
    # Independently: the normalised, centred data's variance along each unit component, capped
    # at the third's.
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    xs = xn - xn.mean(0)
    spread = ((xs @ fit.components.T) ** 2).sum(0) / (len(x) - 1)
    np.testing.assert_allclose(fit.weights, np.minimum(1, np.sqrt(spread[2] / spread)), rtol=1e-6)
    assert fit.weights[0] < 1 and fit.weights[2] == 1
    np.testing.assert_allclose(np.linalg.norm(fit.embedding_map, axis=1), fit.weights, rtol=1e-9)
    # In the embedding no direction spreads wider than the ceiling.
    z = xs @ fit.embedding_map.T
    assert z.var(0, ddof=1).max() <= spread[2] * (1 + 1e-6)


def test_within_class_metric_shrinks_the_directions_photos_of_one_class_spread_along():
    """Two classes whose photos spread 3x as far along one (turned) direction as along the other:
    the metric is U diag(1 / sqrt(1 + A l / median l)) U^T in that direction's basis."""
    rng = np.random.default_rng(2)
    turn = np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])
    within = rng.normal(size=(4000, 2)) * [3.0, 1.0]
    labels = np.repeat([0, 1], 2000)
    rows = (within + np.where(labels[:, None] == 0, [-2.0, -4.0], [2.0, 4.0])) @ turn.T
    metric = within_class_metric(rows, labels, 3.0)
    spread = np.array([9.0, 1.0])  # the variances along the turned axes; their median is 5
    expected = turn @ np.diag(1 / np.sqrt(1 + 3.0 * spread / spread.mean())) @ turn.T
    np.testing.assert_allclose(metric, expected, atol=0.03)
    np.testing.assert_allclose(metric, metric.T)
    # A photo of class 0 drawn far along its class's spread: nearer class 1's centre in plain
    # distance, nearer its own under the metric.
    query = np.array([[5.0, -1.0]]) @ turn.T
    centres = np.array([[-2.0, -4.0], [2.0, 4.0]]) @ turn.T
    assert np.linalg.norm(query - centres, axis=1).argmin() == 1
    assert np.linalg.norm((query - centres) @ metric, axis=1).argmin() == 0


def test_within_class_metric_is_the_identity_when_off_or_nothing_to_learn():
    rows = np.random.default_rng(3).normal(size=(6, 4))
    np.testing.assert_array_equal(within_class_metric(rows, np.array([0, 0, 1, 1, 2, 2]), 0.0), np.eye(4))
    # One photo a class: no within-class spread to learn from.
    np.testing.assert_array_equal(within_class_metric(rows, np.arange(6), 3.0), np.eye(4))
    # A lone photo's class is left out; the others still give the metric.
    some = within_class_metric(rows, np.array([0, 0, 0, 1, 1, 2]), 3.0)
    assert not np.allclose(some, np.eye(4))
