"""Feature vectors -> PCA embeddings -> nearest classes, distances, scores and "known"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Distances are computed in chunks of this many rows so memory stays bounded (N x N is not).
_CHUNK = 1024


def project(features: np.ndarray, mean: np.ndarray, scale: np.ndarray, components: np.ndarray) -> np.ndarray:
    """L2-normalise each row, centre and scale like Spark's StandardScaler (a scale of 0 -> 0),
    then apply the PCA: batch.fit's projection. features (n, D); mean, scale (D,); components
    (K, D) -> (n, K) float32."""
    f = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    f = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
    inv = np.divide(1.0, scale, out=np.zeros_like(scale, dtype=np.float64), where=scale > 0)
    centred = (f - mean) * inv
    return (centred @ np.asarray(components, dtype=np.float64).T).astype(np.float32)


def plain_coordinates(embeddings: np.ndarray, plain_map: np.ndarray) -> np.ndarray:
    """Embeddings (n, K), weighted (batch.fit.component_weights) and measured under the
    within-class metric (batch.fit.within_class_metric), back in plain PCA coordinates, float64:
    where the job calibrates, and the service checks, the plain "known" thresholds. plain_map
    (K, K) is the bundle's, the inverse of what the job applied."""
    return np.asarray(embeddings, dtype=np.float64) @ np.asarray(plain_map, dtype=np.float64)


def pairwise_distances(a: np.ndarray, b: np.ndarray, b_squared: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances between the rows of a (n, K) and b (m, K), float64.

    b_squared: (b * b).sum(1) of a float64 b, when the caller keeps it (the service's reference
    rows: computing it per request was most of a request's search time)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if b_squared is None:
        b_squared = (b * b).sum(1)
    sq = (a * a).sum(1)[:, None] + b_squared[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def class_members(label_idx: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Row indices of each class's training photos."""
    return [np.flatnonzero(label_idx == c) for c in range(n_classes)]


def row_runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted row indices -> the (start, stop) ranges of consecutive ones, in order."""
    if not len(rows):
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(rows)]])
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


def squared_norms(rows: np.ndarray, block: int = 65536) -> np.ndarray:
    """(rows * rows).sum(1) in float64, a block of rows at a time (no float64 copy of all)."""
    out = np.empty(len(rows))
    for start in range(0, len(rows), block):
        b = np.asarray(rows[start : start + block], dtype=np.float64)
        out[start : start + block] = (b * b).sum(1)
    return out


def min_per_class(d: np.ndarray, members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """From a (n, N) distance block: (n, C) distance to each class's nearest photo, and its row."""
    n = d.shape[0]
    dist = np.full((n, len(members)), np.inf)
    nearest = np.full((n, len(members)), -1, dtype=np.int64)
    rows = np.arange(n)
    for c, idx in enumerate(members):
        if len(idx):
            arg = d[:, idx].argmin(1)
            dist[:, c] = d[rows, idx[arg]]
            nearest[:, c] = idx[arg]
    return dist, nearest


def class_distances(
    queries: np.ndarray,
    embeddings: np.ndarray,
    label_idx: np.ndarray,
    n_classes: int,
    *,
    query_groups: np.ndarray | None = None,
    row_groups: np.ndarray | None = None,
    row_scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per query and class: distance to the class's nearest training row, and that row.

    A class is as close as its closest photo: fruits are photographed from all sides, so a
    class is many clusters and its centroid can sit far from all of them.
    With groups (the photo each row was made from), a query never matches a row of its own
    group: leave-one-photo-out, so a photo's augmented views cannot vouch for it.
    row_scale (N,) multiplies each row's distances (see view_scale).
    """
    members = class_members(label_idx, n_classes)
    dist_parts, nearest_parts = [], []
    for start in range(0, len(queries), _CHUNK):
        d = pairwise_distances(queries[start : start + _CHUNK], embeddings)
        if row_scale is not None:
            d *= row_scale[None, :]
        if query_groups is not None:
            d[query_groups[start : start + _CHUNK, None] == row_groups[None, :]] = np.inf
        dist, nearest = min_per_class(d, members)
        dist_parts.append(dist)
        nearest_parts.append(nearest)
    if not dist_parts:
        return np.zeros((0, n_classes)), np.zeros((0, n_classes), dtype=np.int64)
    return np.concatenate(dist_parts), np.concatenate(nearest_parts)


# An augmented view counts this much farther than the photo itself: near-ties go to real
# photos, so views rescue photos far from every real one without taking clean photos from
# their class (chosen with random weights; docs/decisions.md).
VIEW_DISTANCE_FACTOR = 1.15


def view_scale(views: np.ndarray, factor: float) -> np.ndarray:
    """Per reference row: 1 for a photo, `factor` for an augmented view of one."""
    return np.where(np.asarray(views) > 0, factor, 1.0)


def scores_from_distances(dist: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax over classes of -distance/temperature: each row sums to 1, each value in [0, 1]."""
    logits = -np.where(np.isfinite(dist), dist, np.inf) / max(temperature, 1e-12)
    logits -= logits.max(1, keepdims=True)
    expd = np.exp(logits)
    return expd / expd.sum(1, keepdims=True)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width bins by count."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return float("nan")
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.sum() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(gap / len(confidence))


def fit_temperature(dist: np.ndarray, label_idx: np.ndarray) -> float:
    """The softmax temperature that minimises the negative log-likelihood of held-out answers.

    dist: (n, C) held-out class distances of photos whose true classes are label_idx. One
    scalar, so it cannot overfit; a grid over log-temperature is exact enough and robust.
    """
    finite = dist[np.isfinite(dist)]
    centre = float(np.median(finite)) if len(finite) else 1.0
    grid = centre * np.logspace(-3, 1, 161)
    rows = np.arange(len(dist))
    nll = []
    for t in grid:
        p = scores_from_distances(dist, t)[rows, label_idx]
        nll.append(-np.log(np.maximum(p, 1e-12)).mean())
    return float(grid[int(np.argmin(nll))])


def leave_one_out_distances(
    embeddings: np.ndarray,
    label_idx: np.ndarray,
    groups: np.ndarray | None = None,
    row_scale: np.ndarray | None = None,
) -> np.ndarray:
    """For each training row: distance to the nearest row of its own class from ANOTHER photo."""
    groups = np.arange(len(embeddings)) if groups is None else groups
    out = np.full(len(embeddings), np.inf)
    for c in np.unique(label_idx):
        members = np.flatnonzero(label_idx == c)
        if len(members) < 2:
            continue
        for start in range(0, len(members), _CHUNK):
            part = members[start : start + _CHUNK]
            d = pairwise_distances(embeddings[part], embeddings[members])
            if row_scale is not None:
                d *= row_scale[members][None, :]
            d[groups[part, None] == groups[members][None, :]] = np.inf
            out[part] = d.min(1)
    return out


@dataclass(frozen=True)
class Calibration:
    thresholds: np.ndarray  # (C,) a photo farther than this from class c is not known as c
    plain_thresholds: np.ndarray  # (C,) the same for distances in `plain` coordinates
    temperature: float  # softmax temperature: scores are calibrated confidences
    percentile: float
    margin: float
    held_out: int  # rows whose held-out answers fitted the temperature
    held_out_ece: float  # ECE (15 bins) of those answers at the fitted temperature
    view_factor: float  # distances to augmented views count this many times


# Held-out answers used to fit the temperature: enough for a stable scalar, bounded cost.
CALIBRATION_ROWS = 6000


def calibrate(
    embeddings: np.ndarray,
    label_idx: np.ndarray,
    n_classes: int,
    *,
    groups: np.ndarray | None = None,
    views: np.ndarray | None = None,
    view_factor: float = VIEW_DISTANCE_FACTOR,
    percentile: float = 99.0,
    margin: float = 1.5,
    seed: int = 0,
    plain: np.ndarray | None = None,
) -> Calibration:
    """Per-class "unknown" thresholds and the confidence temperature, from held-out answers.

    Every answer is leave-one-photo-out: a training photo is classified against the rows of
    all the OTHER photos (`groups` = the photo each row came from, so its own augmented views
    do not count; `views` > 0 marks augmented rows, whose distances count `view_factor` times),
    exactly as the service classifies a new photo. The photos themselves are the queries.

    threshold_c = margin x the `percentile`-th percentile of the held-out same-class NN
    distances of class c. A class with one photo borrows the median threshold of the others.
    Margin 1.5, measured on the full Fruits-360 Test split (`python -m benchmarks.unknown_rate`):
    0.9% of real photos called unknown while noise and flat-colour images stay unknown.

    temperature: fitted by likelihood on up to CALIBRATION_ROWS held-out answers (temperature
    scaling), so that among answers given with confidence c, about c are right.

    plain: the rows in plain PCA coordinates when `embeddings` are weighted (batch.fit): the
    same thresholds measured there (default: those of `embeddings`).
    """
    groups = np.arange(len(embeddings)) if groups is None else np.asarray(groups)
    views = np.zeros(len(embeddings), dtype=int) if views is None else np.asarray(views)
    scale = view_scale(views, view_factor)
    photos = np.flatnonzero(views == 0)

    def class_thresholds(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        loo = leave_one_out_distances(rows, label_idx, groups, scale)[photos]
        out = np.full(n_classes, np.nan)
        for c in range(n_classes):
            d = loo[label_idx[photos] == c]
            d = d[np.isfinite(d)]
            if len(d):
                out[c] = margin * np.percentile(d, percentile)
        fallback = np.nanmedian(out) if np.isfinite(out).any() else np.inf
        return np.where(np.isfinite(out), out, fallback), loo

    thresholds, loo = class_thresholds(embeddings)
    plain_thresholds = thresholds if plain is None else class_thresholds(np.asarray(plain))[0]

    rng = np.random.default_rng(seed)
    rows = photos
    if len(rows) > CALIBRATION_ROWS:
        rows = np.sort(rng.choice(rows, CALIBRATION_ROWS, replace=False))
    dist, _ = class_distances(
        embeddings[rows],
        embeddings,
        label_idx,
        n_classes,
        query_groups=groups[rows],
        row_groups=groups,
        row_scale=scale,
    )
    usable = np.isfinite(dist[np.arange(len(rows)), label_idx[rows]])
    dist, truth = dist[usable], label_idx[rows][usable]
    if len(dist):
        temperature = fit_temperature(dist, truth)
        scores = scores_from_distances(dist, temperature)
        ece = expected_calibration_error(scores.max(1), scores.argmax(1) == truth)
    else:  # one photo per class: nothing held out
        finite = loo[np.isfinite(loo)]
        temperature, ece = (float(np.median(finite)) if len(finite) else 1.0), float("nan")
    return Calibration(
        thresholds.astype(np.float64),
        plain_thresholds.astype(np.float64),
        temperature,
        percentile,
        margin,
        len(dist),
        ece,
        view_factor,
    )
