"""Nearest reference rows of a query: exact numpy search, or a faiss IVF index past INDEX_MIN_ROWS.

Both kinds answer `search(queries, k)` with real Euclidean distances in float64 (computed as
models.scoring.pairwise_distances computes them) and row ids, nearest first. The index only
chooses which rows to measure: the rows it returns are measured exactly, from their float32
values, so a row found by both kinds has the same distance under both (to ~1e-15).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from models.scoring import pairwise_distances

# Past this many rows the service searches an index instead of every row, where exact search
# passes ~2.5 ms a query: `python -m benchmarks.search --sizes 10000,20000,30000,50000` (2 cores,
# one query, one BLAS thread) gave 0.9, 1.6, 2.5 and 5.9 ms (14 at 100k, 146 at 1M).
INDEX_MIN_ROWS = 30_000

# Lists probed per query. Recall@1 vs exact on 300 real Test photos: 0.993-1.000 from 10k to 1M
# rows (1.000 at 100k and 1M, 1.1 ms a query at 1M); probing 16 of 4,096 gave 0.9965 at 1M.
DEFAULT_NPROBE = 32

# A query block's distance matrix stays under this many entries (float64: 128 MB).
_BLOCK_ENTRIES = 16 * 1024 * 1024

_MAGIC = b"fruitclf-search-index\n"
INDEX_FORMAT = 1


class SearchIndexError(ValueError):
    """An index's bytes that cannot be used: not an index, another format, or corrupt."""


class Search(Protocol):
    """What the classifier asks of a search: the k nearest rows of each query."""

    n_rows: int
    dim: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (n, K) -> distances (n, k) float64 ascending, row ids (n, k) int64; fewer than
        k rows found: the rest are inf and -1."""
        ...


def _nearest_first(sq: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest squared distances of each row of sq, as distances, ties by row id."""
    n, m = sq.shape
    if m > k:
        keep = np.argpartition(sq, k - 1, axis=1)[:, :k]
        sq, ids = np.take_along_axis(sq, keep, 1), np.take_along_axis(ids, keep, 1)
    order = np.lexsort((ids, sq), axis=1)
    dist = np.sqrt(np.maximum(np.take_along_axis(sq, order, 1), 0.0))
    ids = np.take_along_axis(ids, order, 1)
    if dist.shape[1] < k:  # fewer rows than k
        dist = np.pad(dist, ((0, 0), (0, k - dist.shape[1])), constant_values=np.inf)
        ids = np.pad(ids, ((0, 0), (0, k - ids.shape[1])), constant_values=-1)
    return dist, ids


class ExactSearch:
    """Every row measured: the reference the index is judged against, and the path below
    INDEX_MIN_ROWS (where the parity tests run)."""

    def __init__(self, rows: np.ndarray):
        self._rows = np.asarray(rows, dtype=np.float64)
        self._squared = (self._rows * self._rows).sum(1)
        self.n_rows, self.dim = self._rows.shape

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float64).reshape(-1, self.dim)
        step = max(1, _BLOCK_ENTRIES // max(self.n_rows, 1))
        parts = [(np.zeros((0, k)), np.zeros((0, k), dtype=np.int64))]
        for start in range(0, len(queries), step):
            d = pairwise_distances(queries[start : start + step], self._rows, self._squared)
            ids = np.broadcast_to(np.arange(self.n_rows), d.shape)
            parts.append(_nearest_first(d * d, ids, k))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclass(frozen=True)
class IndexInfo:
    """What an index was built from and how it searches; the header of its bytes."""

    rows: int
    dim: int
    lists: int  # inverted lists (k-means cells) the rows are filed under
    nprobe: int  # lists searched per query
    seed: int  # of the k-means training sample and iterations
    faiss_version: str
    format: int = INDEX_FORMAT
    kind: str = "faiss-ivf-flat"


def lists_for(rows: int) -> int:
    """Inverted lists for `rows` rows: the power of two nearest 4 x sqrt(rows), faiss's usual
    range (1,024 at 100k rows, 4,096 at 1M), at least 1 and at most rows / 39 (enough
    training points per list)."""
    target = 4 * math.sqrt(max(rows, 1))
    return int(max(1, min(2 ** round(math.log2(target)), rows // 39)))


class IndexedSearch:
    """A faiss IndexIVFFlat: rows filed under k-means cells; a query measures the rows of its
    `nprobe` nearest cells. Built from the same rows and seed, the index is the same bytes
    (assignment to a cell is exact; no graph depends on insertion order or threads)."""

    def __init__(self, index, info: IndexInfo):
        self._index = index
        self.info = info
        self.n_rows, self.dim = info.rows, info.dim

    @classmethod
    def build(cls, rows: np.ndarray, *, seed: int, nprobe: int = DEFAULT_NPROBE) -> IndexedSearch:
        import faiss  # here, not at import: the exact path and its tests need no faiss

        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n, dim = rows.shape
        lists = lists_for(n)
        # 50 points per list: past faiss's 39-point warning, and training stays a fraction of the build.
        rng = np.random.default_rng(seed)
        sample = rows if n <= 50 * lists else rows[np.sort(rng.choice(n, 50 * lists, replace=False))]
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, lists)
        index.cp.seed = seed
        index.train(sample)
        index.add(rows)
        index.nprobe = min(nprobe, lists)
        return cls(index, IndexInfo(n, dim, lists, index.nprobe, seed, faiss.__version__))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, dtype=np.float64).reshape(-1, self.dim)
        _, ids, found = self._index.search_and_reconstruct(np.ascontiguousarray(q, dtype=np.float32), k)
        # The candidates measured again in float64 as ExactSearch measures them; -1: none found.
        found = found.astype(np.float64)
        sq = (q * q).sum(1)[:, None] + (found * found).sum(2) - 2.0 * np.einsum("nk,nmk->nm", q, found)
        sq = np.where(ids >= 0, sq, np.inf)
        dist, order = _nearest_first(sq, np.where(ids >= 0, ids, np.iinfo(np.int64).max), k)
        return dist, np.where(np.isfinite(dist), order, -1)

    def to_bytes(self) -> bytes:
        """Magic, one JSON header line (IndexInfo and the payload's SHA-256), then faiss's bytes."""
        import faiss

        payload = faiss.serialize_index(self._index)  # uint8 array; joined below without a copy of its own
        header = {**asdict(self.info), "sha256": hashlib.sha256(payload).hexdigest()}
        return b"".join([_MAGIC, json.dumps(header, sort_keys=True).encode(), b"\n", payload])

    @classmethod
    def from_bytes(cls, data: bytes) -> IndexedSearch:
        """The index to_bytes wrote; raises SearchIndexError if the bytes are not such an index,
        are of another format, or fail their checksum."""
        import faiss

        if not data.startswith(_MAGIC):
            raise SearchIndexError("not a search index (no header)")
        end = data.find(b"\n", len(_MAGIC))
        try:
            header = json.loads(data[len(_MAGIC) : end])
            sha256 = header.pop("sha256")
            info = IndexInfo(**header)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise SearchIndexError("search index header unreadable") from None
        if info.format != INDEX_FORMAT or info.kind != "faiss-ivf-flat":
            raise SearchIndexError(
                f"search index is {info.kind} format {info.format}; this code reads "
                f"faiss-ivf-flat format {INDEX_FORMAT}: rebuild it with the job"
            )
        payload = memoryview(data)[end + 1 :]
        if hashlib.sha256(payload).hexdigest() != sha256:
            raise SearchIndexError("search index checksum mismatch: the bytes are not those written")
        # Read through a callback: deserialize_index would first copy all the bytes into a vector.
        offset = 0

        def read(n: int) -> bytes:
            nonlocal offset
            offset += n
            return bytes(payload[offset - n : offset])

        index = faiss.read_index(faiss.PyCallbackIOReader(read))
        if (index.ntotal, index.d, index.nlist) != (info.rows, info.dim, info.lists):
            raise SearchIndexError("search index disagrees with its header")
        index.nprobe = info.nprobe
        return cls(index, info)


def make_search(rows: np.ndarray, *, seed: int = 0, min_rows: int = INDEX_MIN_ROWS) -> Search:
    """Exact search below `min_rows` rows, an index from there on."""
    if len(rows) < min_rows:
        return ExactSearch(rows)
    return IndexedSearch.build(rows, seed=seed)


def class_distances_from_neighbours(
    dist: np.ndarray,
    ids: np.ndarray,
    label_idx: np.ndarray,
    n_classes: int,
    row_scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query and class, from each query's k nearest rows (a search's answer): the distance
    to the class's nearest row (each row's distance times row_scale, as scoring.class_distances),
    that row, and whether it is certain.

    Certain: no row outside the k can be nearer, i.e. the distance is at most the k-th
    unscaled distance (row_scale >= 1). Otherwise the true distance lies between that k-th
    distance and the one given (inf, row -1: no row of the class among the k)."""
    n, k = dist.shape
    scaled = dist if row_scale is None else dist * np.where(ids >= 0, row_scale[np.maximum(ids, 0)], 1.0)
    labels = np.where(ids >= 0, label_idx[np.maximum(ids, 0)], n_classes)  # n_classes: a padded slot
    # One cell per (query, class); within a cell the nearest row first, then the first of each cell.
    cell = (np.arange(n)[:, None] * (n_classes + 1) + labels).ravel()
    order = np.lexsort((scaled.ravel(), cell))
    first = order[np.r_[True, cell[order][1:] != cell[order][:-1]]] if len(order) else order
    class_dist = np.full(n * (n_classes + 1), np.inf)
    nearest = np.full(n * (n_classes + 1), -1, dtype=np.int64)
    class_dist[cell[first]] = scaled.ravel()[first]
    nearest[cell[first]] = ids.ravel()[first]
    class_dist = class_dist.reshape(n, n_classes + 1)[:, :n_classes]
    nearest = nearest.reshape(n, n_classes + 1)[:, :n_classes]
    return class_dist, nearest, class_dist <= dist[:, -1:]
