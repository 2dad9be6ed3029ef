"""Projection, nearest-class distances, scores and calibration against independent numpy."""

from __future__ import annotations

import numpy as np

from models.scoring import (
    calibrate,
    class_distances,
    leave_one_out_distances,
    project,
    scores_from_distances,
)

rng = np.random.default_rng(7)


def test_project_standardises_like_spark_and_applies_components():
    x = rng.normal(3.0, 2.0, size=(10, 6))
    x[:, 2] = 5.0  # a constant column: Spark's scaler maps it to 0
    mean, std = x.mean(0), x.std(0, ddof=1)
    comps = np.linalg.qr(rng.normal(size=(6, 3)))[0].T
    z = project(x, mean, std, comps)
    manual = np.zeros_like(x)
    for j in range(6):
        manual[:, j] = 0.0 if std[j] == 0 else (x[:, j] - mean[j]) / std[j]
    np.testing.assert_allclose(z, manual @ comps.T, rtol=1e-5, atol=1e-5)


def test_class_distance_is_the_nearest_member_and_leave_one_out_excludes_self():
    emb = np.array([[0.0, 0], [0, 1], [10, 0], [10, 2]])
    labels = np.array([0, 0, 1, 1])
    dist, nearest = class_distances(np.array([[9.0, 0]]), emb, labels, 2)
    np.testing.assert_allclose(dist, [[9.0, 1.0]])
    assert nearest.tolist() == [[0, 2]]
    loo, _ = class_distances(emb, emb, labels, 2, exclude_self=True)
    np.testing.assert_allclose(loo[:, 0], [1.0, 1.0, 10.0, np.hypot(10, 1)])
    np.testing.assert_allclose(leave_one_out_distances(emb, labels), [1, 1, 2, 2])


def test_scores_are_a_softmax_over_negative_distances():
    d = np.array([[1.0, 2.0, np.inf]])
    s = scores_from_distances(d, temperature=0.5)
    np.testing.assert_allclose(s.sum(), 1.0)
    np.testing.assert_allclose(s[0, 0] / s[0, 1], np.exp(2.0))
    assert s[0, 2] == 0.0


def test_calibration_thresholds_follow_the_loo_percentile():
    emb = np.concatenate([rng.normal(0, 1, (50, 4)), rng.normal(20, 3, (50, 4))])
    labels = np.repeat([0, 1], 50)
    cal = calibrate(emb, labels, 2, percentile=90, margin=1.5)
    loo = leave_one_out_distances(emb, labels)
    np.testing.assert_allclose(cal.thresholds[0], 1.5 * np.percentile(loo[:50], 90))
    assert cal.thresholds[1] > cal.thresholds[0]  # the looser class gets a looser threshold
    assert cal.temperature == np.median(loo)
