"""Fits StandardScaler + PCA: Spark aggregates the moments over the data, numpy decomposes D x D.

Spark ML's PCA decomposes the D x D covariance with the JVM's LAPACK; without the native
BLAS/LAPACK libraries (a laptop without root, a cluster without them) its pure-Java fallback
is slow and, on 18,000 x 2048 features, once failed to converge (breeze
NotConvergedException). Here the executors reduce their rows to (count, sum, X^T X) with
numpy, Spark adds the partials in a tree, and the driver decomposes the correlation matrix
with numpy's LAPACK. The result equals Spark ML's StandardScaler(withMean, withStd) + PCA
(components up to sign, explained variance), which tests/batch/test_fit.py checks.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame

# Rows stacked per matrix product on an executor: bounds the float64 copy to ~16 MB at D=2048.
_ROWS_PER_PRODUCT = 1024


@dataclass(frozen=True)
class Projection:
    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,) sample std; 0 for constant columns
    components: np.ndarray  # (K, D)
    explained_variance: np.ndarray  # ratio per component, for the first k_max components
    k: int
    chosen_by: str


def choose_k(ratios: np.ndarray, variance: float) -> int:
    """Fewest components whose cumulative explained variance reaches `variance`."""
    cumulative = np.cumsum(ratios)
    reached = np.flatnonzero(cumulative >= variance - 1e-12)
    return int(reached[0] + 1) if len(reached) else len(ratios)


def _pack(n: int, total: np.ndarray, gram: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, n=np.array(n), total=total, gram=gram)
    return buf.getvalue()


def _unpack(data: bytes) -> tuple[int, np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return int(f["n"]), f["total"], f["gram"]


def _add(a, b):
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def _partition_moments(batches: Iterator[pd.DataFrame], dim: int) -> Iterator[pd.DataFrame]:
    n, total, gram = 0, np.zeros(dim), np.zeros((dim, dim))
    pending: list[np.ndarray] = []

    def absorb() -> None:
        nonlocal n, total, gram
        x = np.stack(pending).astype(np.float64)
        pending.clear()
        n, total, gram = n + len(x), total + x.sum(0), gram + x.T @ x

    for batch in batches:
        pending.extend(batch["features"].to_numpy())
        if len(pending) >= _ROWS_PER_PRODUCT:
            absorb()
    if pending:
        absorb()
    yield pd.DataFrame({"moments": [_pack(n, total, gram)]})


def feature_moments(features: DataFrame, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, column sums, X^T X) of the `features` column, aggregated by Spark in a tree."""
    fn = partial(_partition_moments, dim=dim)
    partials = features.select("features").mapInPandas(fn, schema="moments binary")
    return partials.rdd.map(lambda row: _unpack(row.moments)).treeReduce(_add, depth=2)


def fit_projection(
    features: DataFrame,
    *,
    n_rows: int,
    dim: int,
    components: int | None,
    variance: float,
    max_components: int,
) -> Projection:
    """features: a DataFrame with an array<float> column `features` (no NULLs)."""
    n, total, gram = feature_moments(features, dim)
    mean = total / n
    cov = (gram - n * np.outer(mean, mean)) / max(n - 1, 1)
    scale = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    # The standardised features' covariance: what Spark ML's PCA decomposes after the scaler.
    corr = cov * inv[:, None] * inv[None, :]
    eigenvalues, vectors = np.linalg.eigh(corr)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    vectors = vectors[:, order]
    k_max = min(dim, max(1, n_rows - 1), max(components or 0, max_components))
    ratios = (eigenvalues / max(eigenvalues.sum(), 1e-300))[:k_max]
    if components:
        k, chosen_by = min(components, k_max), "--components"
    else:
        k, chosen_by = choose_k(ratios, variance), f"explained variance >= {variance}"
    pc = vectors[:, :k].T.copy()
    # A component's sign is arbitrary: fix it (largest entry positive) so reruns agree.
    pc *= np.where(pc[np.arange(k), np.abs(pc).argmax(1)] < 0, -1.0, 1.0)[:, None]
    return Projection(
        mean=mean, scale=scale, components=pc, explained_variance=ratios, k=k, chosen_by=chosen_by
    )
