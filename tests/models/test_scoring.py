"""Projection, nearest-class distances, scores and calibration against independent numpy."""

from __future__ import annotations

import numpy as np

from models.scoring import (
    calibrate,
    class_distances,
    expected_calibration_error,
    leave_one_out_distances,
    pairwise_distances,
    project,
    scores_from_distances,
    view_scale,
)

rng = np.random.default_rng(7)


def test_project_normalises_each_row_then_scales_like_spark_and_applies_components():
    x = rng.normal(3.0, 2.0, size=(10, 6))
    x[:, 2] = 5.0
    x[3] = 0.0  # an all-zero row stays zero
    mean, std = rng.normal(size=6), np.abs(rng.normal(size=6))
    std[4] = 0.0  # a zero scale maps its column to 0, as Spark's scaler does
    comps = np.linalg.qr(rng.normal(size=(6, 3)))[0].T
    z = project(x, mean, std, comps)
    manual = np.zeros_like(x)
    for i in range(10):
        norm = np.sqrt(sum(v * v for v in x[i]))
        for j in range(6):
            unit = x[i, j] / norm if norm else 0.0
            manual[i, j] = 0.0 if std[j] == 0 else (unit - mean[j]) / std[j]
    np.testing.assert_allclose(z, manual @ comps.T, rtol=1e-5, atol=1e-5)


def test_class_distance_is_the_nearest_member_and_leave_one_out_excludes_self():
    emb = np.array([[0.0, 0], [0, 1], [10, 0], [10, 2]])
    labels = np.array([0, 0, 1, 1])
    dist, nearest = class_distances(np.array([[9.0, 0]]), emb, labels, 2)
    np.testing.assert_allclose(dist, [[9.0, 1.0]])
    assert nearest.tolist() == [[0, 2]]
    rows = np.arange(4)
    loo, _ = class_distances(emb, emb, labels, 2, query_groups=rows, row_groups=rows)
    np.testing.assert_allclose(loo[:, 0], [1.0, 1.0, 10.0, np.hypot(10, 1)])
    np.testing.assert_allclose(leave_one_out_distances(emb, labels), [1, 1, 2, 2])


def test_leave_one_photo_out_ignores_the_photos_own_views():
    # Rows 0 and 1 are one photo and its augmented view: each must not vouch for the other.
    emb = np.array([[0.0, 0], [0.1, 0], [3, 0], [10, 0]])
    labels = np.array([0, 0, 0, 1])
    groups = np.array([0, 0, 1, 2])
    np.testing.assert_allclose(leave_one_out_distances(emb, labels, groups)[:3], [3.0, 2.9, 2.9])
    dist, _ = class_distances(emb[:1], emb, labels, 2, query_groups=groups[:1], row_groups=groups)
    np.testing.assert_allclose(dist, [[3.0, 10.0]])


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


def test_fitted_temperature_makes_scores_calibrated_on_fresh_data():
    # Three overlapping classes: answers are right only part of the time, so a calibrated score
    # must be well below 1 for the ambiguous ones. Fit on one sample, check ECE on another.
    centres = np.array([[0.0, 0], [2.2, 0], [1.1, 1.9]])

    def sample(n, seed):
        r = np.random.default_rng(seed)
        labels = np.repeat(np.arange(3), n)
        return centres[labels] + r.normal(0, 1, (3 * n, 2)), labels

    ref, ref_labels = sample(150, 1)
    cal = calibrate(ref, ref_labels, 3)
    test, truth = sample(400, 2)
    dist, _ = class_distances(test, ref, ref_labels, 3)
    scores = scores_from_distances(dist, cal.temperature)
    right = scores.argmax(1) == truth
    assert 0.5 < right.mean() < 0.95  # a hard problem: confidence has something to say
    ece = expected_calibration_error(scores.max(1), right)
    naive = expected_calibration_error(scores_from_distances(dist, 1e-3).max(1), right)
    assert ece < 0.06
    assert naive > 3 * ece  # an arbitrary (sharp) temperature is far off
    assert 0 < cal.held_out_ece < 0.06


def test_expected_calibration_error_against_a_hand_computation():
    conf = np.array([0.95, 0.95, 0.55, 0.55, 0.55, 0.15])
    right = np.array([1, 0, 1, 1, 0, 0])
    # bins (15 wide): 0.95 -> bin 14 (acc 0.5), 0.55 -> bin 8 (acc 2/3), 0.15 -> bin 2 (acc 0)
    expected = (2 * abs(0.95 - 0.5) + 3 * abs(0.55 - 2 / 3) + 1 * abs(0.15 - 0)) / 6
    np.testing.assert_allclose(expected_calibration_error(conf, right), expected)


def test_augmented_views_count_farther_than_real_photos():
    # A query equidistant from a real photo of class 0 and a view of class 1: the photo wins.
    emb = np.array([[1.0, 0], [-1.0, 0]])
    labels = np.array([0, 1])
    scale = view_scale(np.array([0, 1]), 1.3)
    np.testing.assert_allclose(scale, [1.0, 1.3])
    dist, _ = class_distances(np.array([[0.0, 0]]), emb, labels, 2, row_scale=scale)
    np.testing.assert_allclose(dist, [[1.0, 1.3]])
    # Far from every real photo, the view still answers.
    dist, _ = class_distances(np.array([[-3.0, 0]]), emb, labels, 2, row_scale=scale)
    assert dist.argmin() == 1


def test_pairwise_distances_against_a_direct_computation_with_or_without_kept_norms():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=(40, 7))
    direct = np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(pairwise_distances(a, b), direct, rtol=1e-9, atol=1e-9)
    # The squared norms a caller keeps give the very same numbers.
    np.testing.assert_array_equal(pairwise_distances(a, b, (b * b).sum(1)), pairwise_distances(a, b))


def test_plain_thresholds_are_measured_in_the_plain_coordinates():
    emb = rng.normal(size=(60, 4))
    labels = np.repeat(np.arange(3), 20)
    weights = np.array([0.25, 0.5, 1.0, 1.0])
    cal = calibrate(emb, labels, 3, plain=emb / weights)
    alone = calibrate(emb / weights, labels, 3)
    np.testing.assert_allclose(cal.plain_thresholds, alone.thresholds)
    np.testing.assert_allclose(cal.thresholds, calibrate(emb, labels, 3).thresholds)
    assert not np.allclose(cal.plain_thresholds, cal.thresholds)
    np.testing.assert_array_equal(calibrate(emb, labels, 3).plain_thresholds, cal.thresholds)


def test_row_runs_are_the_ranges_of_consecutive_rows_and_squared_norms_match_numpy():
    from models.scoring import row_runs, squared_norms

    assert row_runs(np.array([], dtype=np.int64)) == []
    assert row_runs(np.array([3])) == [(3, 4)]
    assert row_runs(np.array([0, 1, 2, 5, 6, 9])) == [(0, 3), (5, 7), (9, 10)]
    rows = np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32)
    want = (rows.astype(np.float64) ** 2).sum(1)
    np.testing.assert_allclose(squared_norms(rows, block=3), want, rtol=1e-12)
