"""Exact and indexed nearest-row search against plain numpy brute force."""

from __future__ import annotations

import numpy as np
import pytest

from models.scoring import class_distances
from models.search import (
    INDEX_MIN_ROWS,
    ExactSearch,
    IndexedSearch,
    SearchIndexError,
    class_distances_from_neighbours,
    make_search,
)


def embedding_like(n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows shaped like a bundle's: classes of several clusters each, variance falling off by
    component as PCA leaves it."""
    rng = np.random.default_rng(seed)
    spread = 1.0 / np.sqrt(1.0 + np.arange(dim))
    centres = rng.standard_normal((classes, 4, dim)) * spread
    labels = rng.integers(0, classes, n)
    rows = centres[labels, rng.integers(0, 4, n)] + 0.25 * rng.standard_normal((n, dim)) * spread
    return rows.astype(np.float32), labels


def brute_force(queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every distance by its definition, in float64, then sorted (a few queries at a time)."""
    rows = rows.astype(np.float64)
    d = np.concatenate(
        [
            np.linalg.norm(q[:, None, :] - rows[None], axis=2)
            for q in np.array_split(queries.astype(np.float64), 1 + len(queries) // 8)
        ]
    )
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), order


@pytest.fixture(scope="module")
def data():
    rows, labels = embedding_like(20_300, 64, 60, seed=3)
    return rows[:20_000], labels[:20_000], rows[20_000:]


@pytest.fixture(scope="module")
def index(data):
    return IndexedSearch.build(data[0], seed=0)


def test_exact_search_is_brute_force_with_real_distances(data):
    rows, _, queries = data
    dist, ids = ExactSearch(rows[:3000]).search(queries[:40], 7)
    want_d, want_i = brute_force(queries[:40], rows[:3000], 7)
    np.testing.assert_allclose(dist, want_d, rtol=1e-9, atol=1e-9)
    assert (ids == want_i).all()
    assert dist.dtype == np.float64 and ids.dtype == np.int64


def test_indexed_recall_at_1_is_at_least_0_99_and_its_distances_are_exact(data, index):
    rows, _, queries = data
    want_d, want_i = brute_force(queries, rows, 1)
    dist, ids = index.search(queries, 10)
    assert np.mean(ids[:, 0] == want_i[:, 0]) >= 0.99
    # Whatever rows it returns, it measures exactly, nearest first.
    measured = np.linalg.norm(queries[:, None, :].astype(np.float64) - rows[ids].astype(np.float64), axis=2)
    np.testing.assert_allclose(dist, measured, rtol=1e-9, atol=1e-9)
    assert (np.diff(dist, axis=1) >= 0).all()


def test_the_index_round_trips_through_its_bytes_and_rebuilds_to_the_same_bytes(data, index):
    rows, _, queries = data
    data_bytes = index.to_bytes()
    loaded = IndexedSearch.from_bytes(data_bytes)
    assert loaded.info == index.info
    for got, want in zip(loaded.search(queries, 20), index.search(queries, 20), strict=True):
        assert (got == want).all()
    assert IndexedSearch.build(rows, seed=0).to_bytes() == data_bytes


def test_an_index_whose_bytes_changed_is_refused(index):
    data = bytearray(index.to_bytes())
    data[-100] ^= 0x01
    with pytest.raises(SearchIndexError, match="checksum mismatch"):
        IndexedSearch.from_bytes(bytes(data))
    with pytest.raises(SearchIndexError, match="not a search index"):
        IndexedSearch.from_bytes(b"\x93NUMPY" + bytes(data))
    header_end = data.index(b"\n", 30)
    renamed = bytes(data[:header_end]).replace(b'"format": 1', b'"format": 2') + bytes(data[header_end:])
    with pytest.raises(SearchIndexError, match="format 2"):
        IndexedSearch.from_bytes(renamed)


def test_asking_for_more_rows_than_there_are_pads_with_inf_and_minus_one(data):
    rows, _, queries = data
    few = rows[:5]
    for search in (ExactSearch(few), IndexedSearch.build(few, seed=0)):
        dist, ids = search.search(queries[:3], 8)
        assert np.isinf(dist[:, 5:]).all() and (ids[:, 5:] == -1).all()
        assert sorted(ids[0, :5].tolist()) == [0, 1, 2, 3, 4]


def test_make_search_is_exact_below_the_threshold_and_indexed_from_it():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((INDEX_MIN_ROWS, 4)).astype(np.float32)
    assert isinstance(make_search(rows[:-1]), ExactSearch)
    assert isinstance(make_search(rows), IndexedSearch)


def test_class_distances_from_neighbours_agree_with_exact_where_certain(data):
    rows, labels, queries = data
    rows, labels, queries = rows[:4000], labels[:4000] % 12, queries[:50]
    scale = np.where(np.arange(len(rows)) % 3 > 0, 1.15, 1.0)  # two of three rows are views
    want, want_rows = class_distances(queries, rows, labels, 12, row_scale=scale)

    nearest = ExactSearch(rows).search(queries, 300)
    got, got_rows, certain = class_distances_from_neighbours(*nearest, labels, 12, scale)
    assert certain.any() and not certain.all()
    np.testing.assert_allclose(got[certain], want[certain], rtol=1e-9)
    assert (got_rows[certain] == want_rows[certain]).all()
    # Uncertain: the true distance is at least the 300th neighbour's and at most what was found.
    bound = nearest[0][:, -1:]
    assert (np.broadcast_to(bound, want.shape)[~certain] <= want[~certain] + 1e-12).all()
    assert (want[~certain] <= got[~certain] + 1e-12).all()
    # The nearest class always comes out certain when k covers a class's nearest rows.
    assert certain[np.arange(len(want)), want.argmin(1)].all()

    every, every_rows, sure = class_distances_from_neighbours(
        *ExactSearch(rows).search(queries, len(rows)), labels, 12, scale
    )
    assert sure.all()
    np.testing.assert_allclose(every, want, rtol=1e-9)
    assert (every_rows == want_rows).all()
