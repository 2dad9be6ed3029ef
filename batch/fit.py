"""Fits StandardScaler + PCA with Spark ML and returns them as plain numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame


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
    vectors = features.select(array_to_vector("features").alias("features"))
    scaler = StandardScaler(withMean=True, withStd=True, inputCol="features", outputCol="scaled")
    scaler_model = scaler.fit(vectors)
    scaled = scaler_model.transform(vectors).select("scaled")
    k_max = min(dim, max(1, n_rows - 1), max(components or 0, max_components))
    pca_model = PCA(k=k_max, inputCol="scaled").fit(scaled)
    ratios = pca_model.explainedVariance.toArray()
    if components:
        k, chosen_by = min(components, k_max), "--components"
    else:
        k, chosen_by = choose_k(ratios, variance), f"explained variance >= {variance}"
    # Spark orders the components by variance, so the first k of the k_max fit are the k-PCA.
    pc = pca_model.pc.toArray()[:, :k].T.copy()
    return Projection(
        mean=scaler_model.mean.toArray(),
        scale=scaler_model.std.toArray(),
        components=pc,
        explained_variance=ratios,
        k=k,
        chosen_by=chosen_by,
    )
