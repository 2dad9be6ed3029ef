"""Feature vectors -> PCA embeddings -> nearest classes, distances, scores and "known"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Distances are computed in chunks of this many rows so memory stays bounded (N x N is not).
_CHUNK = 1024


def project(features: np.ndarray, mean: np.ndarray, scale: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Standardise like Spark's StandardScaler (zero-variance columns -> 0), then apply the PCA.

    features (n, D); mean, scale (D,); components (K, D) -> (n, K) float32.
    """
    inv = np.divide(1.0, scale, out=np.zeros_like(scale, dtype=np.float64), where=scale > 0)
    centred = (np.asarray(features, dtype=np.float64) - mean) * inv
    return (centred @ np.asarray(components, dtype=np.float64).T).astype(np.float32)


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a (n, K) and b (m, K), float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def class_members(label_idx: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Row indices of each class's training photos."""
    return [np.flatnonzero(label_idx == c) for c in range(n_classes)]


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
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Per query and class: distance to the class's nearest training photo, and that photo's row.

    A class is as close as its closest photo: fruits are photographed from all sides, so a
    class is many clusters and its centroid can sit far from all of them.
    With exclude_self, query i is training row i and may not match itself (leave-one-out).
    """
    members = class_members(label_idx, n_classes)
    dist_parts, nearest_parts = [], []
    for start in range(0, len(queries), _CHUNK):
        d = pairwise_distances(queries[start : start + _CHUNK], embeddings)
        if exclude_self:
            rows = np.arange(d.shape[0])
            d[rows, start + rows] = np.inf
        dist, nearest = min_per_class(d, members)
        dist_parts.append(dist)
        nearest_parts.append(nearest)
    if not dist_parts:
        return np.zeros((0, n_classes)), np.zeros((0, n_classes), dtype=np.int64)
    return np.concatenate(dist_parts), np.concatenate(nearest_parts)


def scores_from_distances(dist: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax over classes of -distance/temperature: each row sums to 1, each value in [0, 1]."""
    logits = -np.where(np.isfinite(dist), dist, np.inf) / max(temperature, 1e-12)
    logits -= logits.max(1, keepdims=True)
    expd = np.exp(logits)
    return expd / expd.sum(1, keepdims=True)


def leave_one_out_distances(embeddings: np.ndarray, label_idx: np.ndarray) -> np.ndarray:
    """For each training photo: distance to the nearest OTHER photo of its own class."""
    out = np.full(len(embeddings), np.inf)
    for c in np.unique(label_idx):
        members = np.flatnonzero(label_idx == c)
        if len(members) < 2:
            continue
        d = pairwise_distances(embeddings[members], embeddings[members])
        np.fill_diagonal(d, np.inf)
        out[members] = d.min(1)
    return out


@dataclass(frozen=True)
class Calibration:
    thresholds: np.ndarray  # (C,) a photo farther than this from class c is not known as c
    temperature: float  # softmax temperature for scores
    percentile: float
    margin: float


def calibrate(
    embeddings: np.ndarray,
    label_idx: np.ndarray,
    n_classes: int,
    *,
    percentile: float = 99.0,
    margin: float = 1.5,
) -> Calibration:
    """Per-class "unknown" thresholds from leave-one-out nearest-neighbour distances.

    threshold_c = margin x the `percentile`-th percentile of the LOO same-class NN distances
    of class c: nearly every genuine training photo of c would be accepted, and the margin
    absorbs new photos being a little farther than the training frames are from each other.
    A class with one photo borrows the median threshold of the others.

    Margin 1.5, measured on the full Fruits-360 Test split (2,000 photos, 48 training photos
    a class; `python -m benchmarks.unknown_rate`): 0.9% of real photos called unknown (1.25:
    2.2%, 1.0: 7.6%) while noise and flat-colour images stay unknown; blank and text-on-paper
    images are caught by the classifier's empty-scene rule, not by a tighter margin.
    """
    loo = leave_one_out_distances(embeddings, label_idx)
    thresholds = np.full(n_classes, np.nan)
    for c in range(n_classes):
        d = loo[label_idx == c]
        d = d[np.isfinite(d)]
        if len(d):
            thresholds[c] = margin * np.percentile(d, percentile)
    finite = loo[np.isfinite(loo)]
    fallback = np.nanmedian(thresholds) if np.isfinite(thresholds).any() else np.inf
    thresholds = np.where(np.isfinite(thresholds), thresholds, fallback)
    temperature = float(np.median(finite)) if len(finite) else 1.0
    return Calibration(thresholds.astype(np.float64), temperature, percentile, margin)


def class_centroids(embeddings: np.ndarray, label_idx: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((n_classes, embeddings.shape[1]), dtype=np.float32)
    for c in range(n_classes):
        members = embeddings[label_idx == c]
        if len(members):
            out[c] = members.mean(0)
    return out
