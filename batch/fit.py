"""Fits the projection: every feature row L2-normalised, centred, then PCA. Spark aggregates the
moments over the data, numpy decomposes D x D.

Normalised and centred, not standardised: with pretrained features a photo's direction is
what tells fruits apart, and scaling every column to unit variance gave a weak column the weight
of a strong one (Test 1-NN 94.3 -> 96.3%, docs/robustness.md).

Spark ML's PCA decomposes the D x D covariance with the JVM's LAPACK; without the native
BLAS/LAPACK libraries (a laptop without root, a cluster without them) its pure-Java fallback
is slow and, on 18,000 x 2048 features, once failed to converge (breeze
NotConvergedException). Here the executors reduce their rows to (count, sum, X^T X) with
numpy, Spark adds the partials in a tree, and the driver decomposes the correlation matrix
with numpy's LAPACK. The result equals Spark ML's Normalizer + StandardScaler(withMean, not
withStd) + PCA (components up to sign, explained variance), which tests/batch/test_fit.py checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame

# Rows per float64 product on an executor: enough for BLAS's syrk to run near its peak, while the
# block (16 MB at D=2048) stays small next to the D x D sum itself.
_ROWS_PER_PRODUCT = 1024


@dataclass(frozen=True)
class Projection:
    mean: np.ndarray  # (D,)
    components: np.ndarray  # (K, D)
    explained_variance: np.ndarray  # ratio per component, for the first k_max components
    chosen_by: str
    weights: np.ndarray  # (K,) each component's factor in the embedding (component_weights)

    @property
    def k(self) -> int:
        return len(self.components)

    @property
    def scale(self) -> np.ndarray:
        """(D,) each column's factor before the PCA: 1, since the rows are centred, not standardised."""
        return np.ones_like(self.mean)

    @property
    def embedding_map(self) -> np.ndarray:
        """(K, D): the components scaled by their weights, the map from standardised features to
        embeddings: what the bundle stores as pca_components and models.scoring.project applies."""
        return self.components * self.weights[:, None]


def choose_k(ratios: np.ndarray, variance: float) -> int:
    """Fewest components whose cumulative explained variance reaches `variance`."""
    cumulative = np.cumsum(ratios)
    reached = np.flatnonzero(cumulative >= variance - 1e-12)
    return int(reached[0] + 1) if len(reached) else len(ratios)


def component_weights(eigenvalues: np.ndarray, k: int, ceiling_rank: int) -> np.ndarray:
    """Per kept component, the factor its coordinate is scaled by: a component whose variance
    exceeds that of component `ceiling_rank` (1-based) is shrunk to it; the others keep theirs.
    0, or a rank beyond K, keeps plain PCA coordinates.

    With these features the first component is how strongly the whole photo excites the model
    (with random weights: correlation 0.999 with the mean feature, half the variance, and what a
    contrast change moves most): left as it is, it outweighs every other direction in the
    distance (see batch/config.py, SPREAD_CEILING_RANK).
    """
    if not 0 < ceiling_rank <= k:
        return np.ones(k)
    ceiling = eigenvalues[ceiling_rank - 1]
    return np.minimum(1.0, np.sqrt(ceiling / np.maximum(eigenvalues[:k], 1e-300)))


def within_class_metric(embeddings: np.ndarray, label_idx: np.ndarray, shrink: float) -> np.ndarray:
    """(K, K) symmetric map of the embeddings into the space the search measures: directions along
    which photos of one fruit differ (its other sides, light, ripeness) count less than those
    that tell fruits apart (within-class covariance normalisation).

    embeddings: the training photos' rows (no augmented views), label_idx their classes. With
    S_w = U diag(l) U^T their within-class covariance, the map is U diag(1 / sqrt(1 + shrink x
    l / median(l))) U^T: a direction with the median within-class variance is shrunk by
    1/sqrt(1 + shrink), one with little keeps its length. 0 (or no class with two photos)
    gives the identity.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    k = emb.shape[1]
    classes, idx, counts = np.unique(label_idx, return_inverse=True, return_counts=True)
    shared = counts[idx] >= 2  # a lone photo has no within-class spread to learn from
    if shrink <= 0 or not shared.any():
        return np.eye(k)
    means = np.zeros((len(classes), k))
    np.add.at(means, idx, emb)
    means /= counts[:, None]
    centred = (emb - means[idx])[shared]
    spread, vectors = np.linalg.eigh(centred.T @ centred / len(centred))
    spread = np.clip(spread, 0.0, None)
    median = float(np.median(spread))
    if median <= 0:
        return np.eye(k)
    return (vectors * (1.0 / np.sqrt(1.0 + shrink * spread / median))) @ vectors.T


def _flat(n: int, total: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """(n, sum, X^T X) as one float64 vector [n, sum, upper triangle of X^T X].

    X^T X is symmetric, so its upper triangle is all of it: half the bytes per partial to ship
    and add. One vector, so the tree reduce adds partials with a single np.add.
    """
    upper = gram[np.triu_indices(len(total))]
    return np.concatenate([[float(n)], total, upper])


def _unflat(flat: np.ndarray, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
    gram = np.zeros((dim, dim))
    gram[np.triu_indices(dim)] = flat[1 + dim :]
    gram += np.triu(gram, 1).T
    return int(flat[0]), flat[1 : 1 + dim], gram


def normalized(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float64 (an all-zero row stays zero)."""
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def _rows(lists: pa.ListArray, dim: int) -> np.ndarray:
    """An Arrow column of `dim`-long lists as a (rows, dim) array, without a Python object per row."""
    values = lists.flatten().to_numpy()  # zero-copy; raises on NULL values
    if len(values) != len(lists) * dim:
        raise ValueError(f"every features row must hold {dim} values (and none be NULL)")
    return values.reshape(len(lists), dim)


class _Moments:
    """Running (count, sum, X^T X) of one task's rows, in float64.

    float64 because the covariance is X^T X - n mean mean^T: float32 sums lose the low digits
    that the subtraction exposes, and the result must match Spark ML to 1e-6. Rows gather in a
    block first, so each product is one large BLAS call, not one per Arrow batch.
    """

    def __init__(self, dim: int):
        self.n = 0
        self.total = np.zeros(dim)
        self.gram = np.zeros((dim, dim))
        self._block = np.empty((_ROWS_PER_PRODUCT, dim))
        self._filled = 0

    def add(self, rows: np.ndarray) -> None:
        while len(rows):
            take = min(len(rows), len(self._block) - self._filled)
            self._block[self._filled : self._filled + take] = rows[:take]
            self._filled += take
            rows = rows[take:]
            if self._filled == len(self._block):
                self._absorb()

    def _absorb(self) -> None:
        x = self._block[: self._filled]
        self.n += len(x)
        self.total += x.sum(0)
        self.gram += x.T @ x  # numpy sees x.T @ x and runs syrk: half the flops of a gemm
        self._filled = 0

    def to_bytes(self) -> bytes:
        if self._filled:
            self._absorb()
        return _flat(self.n, self.total, self.gram).tobytes()


def _task_moments(batches: Iterator[pa.RecordBatch], dim: int) -> Iterator[pa.RecordBatch]:
    moments = _Moments(dim)
    for batch in batches:
        moments.add(normalized(_rows(batch.column(0), dim)))
    yield pa.RecordBatch.from_arrays([pa.array([moments.to_bytes()], pa.binary())], names=["moments"])


def feature_moments(features: DataFrame, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, column sums, X^T X) of the `features` column, aggregated by Spark in a tree.

    One task per core, not per partition: each task's partial holds a D x D sum (16 MB at
    D=2048), and the job's hundreds of small featurize partitions would otherwise ship and add
    hundreds of them, which costs far more than the products. coalesce() merges partitions
    without a shuffle.
    """
    tasks = features.sparkSession.sparkContext.defaultParallelism
    fn = partial(_task_moments, dim=dim)
    partials = features.select("features").coalesce(tasks).mapInArrow(fn, schema="moments binary")
    flats = partials.rdd.map(lambda row: np.frombuffer(row.moments, dtype=np.float64))
    return _unflat(flats.treeReduce(np.add, depth=2), dim)


def fit_projection(
    features: DataFrame,
    *,
    n_rows: int,
    dim: int,
    components: int | None,
    variance: float,
    max_components: int,
    ceiling_rank: int = 0,
) -> Projection:
    """features: a DataFrame with an array<float> column `features` (no NULLs), L2-normalised here."""
    n, total, gram = feature_moments(features, dim)
    mean = total / n
    cov = (gram - n * np.outer(mean, mean)) / max(n - 1, 1)
    eigenvalues, vectors = np.linalg.eigh(cov)
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
        mean=mean,
        components=pc,
        explained_variance=ratios,
        chosen_by=chosen_by,
        weights=component_weights(eigenvalues, k, ceiling_rank),
    )
