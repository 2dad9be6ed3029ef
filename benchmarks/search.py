"""`make bench-search`: exact vs indexed nearest-row search at 100k and 1M rows: latency, recall, memory.

Rows: a bundle's real embeddings (`--bundle`), then seeded jittered copies of them up to each
size (Gaussian noise of `--jitter` x each dimension's std). Queries: real Test photos through
the bundle's own featurizer and projection. Without a bundle: Gaussian-mixture rows, said so.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks.data import DEFAULT_DATA


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = float(rest.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def test_photo_embeddings(bundle_uri: str, data: Path, photos: int) -> np.ndarray:
    """(n, K) embeddings of `photos` Test photos spread over the classes, as the service makes them."""
    from models.bundle import read_bundle
    from models.featurizer import build_featurizer, featurize_bytes
    from models.scoring import project

    bundle = read_bundle(bundle_uri)
    paths = sorted((data / "Test").rglob("*.jpg"))
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, min(photos, len(paths))).round().astype(int)]
    featurizer = build_featurizer(bundle.manifest.featurizer)
    features, _ = featurize_bytes(featurizer, [p.read_bytes() for p in paths])
    features = features[~np.isnan(features).any(1)]
    return project(features, bundle.scaler_mean, bundle.scaler_scale, bundle.pca_components)


def mixture_rows(n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in rows without a bundle: `classes` Gaussian blobs, variance falling off as PCA's does."""
    rng = np.random.default_rng(seed)
    spread = 1.0 / np.sqrt(1.0 + np.arange(dim))
    centres = rng.standard_normal((classes, dim)) * spread
    labels = rng.integers(0, classes, n)
    rows = centres[labels] + 0.3 * rng.standard_normal((n, dim)) * spread
    return rows.astype(np.float32), labels


def grow(base: np.ndarray, n: int, jitter: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n rows: `base` itself and copies of random base rows plus noise of jitter x per-dim std,
    each copy beside its base row, as a job writes rows (sorted by photo URI, so a class's rows
    lie together); also which base row each came from."""
    rng = np.random.default_rng(seed)
    copies = rng.integers(0, len(base), max(0, n - len(base)))
    origin = np.concatenate([np.arange(min(n, len(base))), copies])
    noisy = np.concatenate([np.zeros(min(n, len(base)), dtype=bool), np.ones(len(copies), dtype=bool)])
    order = np.argsort(origin, kind="stable")
    origin, noisy = origin[order], noisy[order]
    rows = base[origin]
    sigma = (jitter * base.std(0)).astype(np.float32)
    copied = np.flatnonzero(noisy)
    for start in range(0, len(copied), 65536):  # in blocks: the noise of 1M x K float64 is 2 GB
        at = copied[start : start + 65536]
        rows[at] += rng.standard_normal((len(at), rows.shape[1]), dtype=np.float32) * sigma
    return rows, origin


def timed(search, queries: np.ndarray, k: int, limit: int, budget_s: float) -> tuple[float, float, int]:
    """p50 and p99 ms of one query at a time, over at most `limit` queries or `budget_s` seconds."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(limit):
        q = queries[i % len(queries)][None]
        start = time.perf_counter()
        search.search(q, k)
        times.append(time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return 1e3 * float(np.median(times)), 1e3 * float(np.percentile(times, 99)), len(times)


def classes_certain(
    queries: np.ndarray, found: tuple[np.ndarray, np.ndarray], rows: np.ndarray, label_idx, scale
) -> tuple[float, float]:
    """Shares of queries whose nearest class, and whose 5 nearest classes (exact, views counted x
    their factor), come out of the k neighbours certain and at exact's distance."""
    from models.scoring import class_distances
    from models.search import class_distances_from_neighbours

    n_classes = int(label_idx.max()) + 1
    got, _, certain = class_distances_from_neighbours(*found, label_idx, n_classes, scale)
    ok = []
    for start in range(0, len(queries), 16):  # class_distances holds queries x rows float64
        want, _ = class_distances(queries[start : start + 16], rows, label_idx, n_classes, row_scale=scale)
        for i, w in enumerate(want, start):
            best = np.argsort(w, kind="stable")[:5]
            same = certain[i, best] & np.isclose(got[i, best], w[best], rtol=1e-9, atol=0)
            ok.append((same[0], same.all()))
    top1, top5 = np.mean(ok, axis=0)
    return float(top1), float(top5)


def service_memory(
    bundle_uri: str, rows_file: str, origin_file: str, index_file: str, queries_file: str
) -> list[tuple]:
    """In a fresh process, as the service would load them: the model and bundle, then the rows
    with their labels, sources and views, then the index, then the Classifier searching it, and
    its classify time per photo (top 5, one photo at a time, one thread).
    (step, VmRSS MB, VmHWM MB, note) after each."""
    import faiss
    from threadpoolctl import threadpool_limits

    from models.bundle import read_bundle
    from models.classifier import Classifier
    from models.featurizer import build_featurizer
    from models.manifest import Search
    from models.search import IndexedSearch

    out = [("python + numpy", *rss_mb(), "")]
    bundle = read_bundle(bundle_uri)
    featurizer = build_featurizer(bundle.manifest.featurizer)
    out.append((f"model + bundle ({len(bundle.labels)} rows)", *rss_mb(), ""))
    origin = np.load(origin_file)
    big = dataclasses.replace(
        bundle,
        embeddings=np.load(rows_file),
        labels=bundle.labels[origin],
        sources=bundle.sources[origin],
        views=bundle.views[origin],
    )
    out.append((f"+ {len(origin):,} rows as the bundle holds them", *rss_mb(), ""))
    start = time.perf_counter()
    index = IndexedSearch.from_bytes(Path(index_file).read_bytes())
    out.append(("+ the index (from its bytes)", *rss_mb(), f"loaded in {time.perf_counter() - start:.1f} s"))
    info = index.info
    search = Search(
        kind=info.kind,
        chosen_by="ivf",
        file="search_index.bin",
        lists=info.lists,
        nprobe=info.nprobe,
        seed=info.seed,
        faiss_version=info.faiss_version,
    )
    big = dataclasses.replace(
        big, manifest=big.manifest.model_copy(update={"search": search}), search_index=index
    )
    start = time.perf_counter()
    classifier = Classifier(big, featurizer)
    out.append(
        (
            "+ the Classifier (float32 rows, the index)",
            *rss_mb(),
            f"built in {time.perf_counter() - start:.1f} s",
        )
    )
    queries = np.load(queries_file)
    with threadpool_limits(1):
        faiss.omp_set_num_threads(1)
        times = []
        for q in queries:
            start = time.perf_counter()
            classifier.classify(q[None], 5)
            times.append(time.perf_counter() - start)
    p50, p99 = 1e3 * np.median(times), 1e3 * np.percentile(times, 99)
    note = f"classify top-5 p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(times)} photos"
    out.append((f"after {len(times)} classify calls", *rss_mb(), note))
    return out


def search_memory(rows_file: str, index_file: str) -> list[tuple]:
    """Without a bundle: numpy + faiss, the rows, then the index, in a fresh process."""
    from models.search import IndexedSearch

    out = [("python + numpy", *rss_mb(), "")]
    rows = np.load(rows_file)
    out.append((f"+ {len(rows):,} rows", *rss_mb(), ""))
    IndexedSearch.from_bytes(Path(index_file).read_bytes())
    out.append(("+ the index (from its bytes)", *rss_mb(), ""))
    return out


def elsewhere(fn, *args):
    """fn(*args) in a fresh spawned process: its memory and TensorFlow stay out of ours."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    import faiss
    from threadpoolctl import threadpool_limits

    from models.bundle import read_bundle
    from models.scoring import VIEW_DISTANCE_FACTOR, view_scale
    from models.search import INDEX_MIN_ROWS, ExactSearch, IndexedSearch

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bundle", help="a job's bundle root: its CURRENT version's embeddings are the base rows")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Fruits-360 (its Test/ photos query)")
    p.add_argument("--sizes", default="100000,1000000", help="rows, comma-separated")
    p.add_argument("--test-photos", type=int, default=300, help="Test photos featurized as queries")
    p.add_argument("--queries", type=int, default=500, help="one-at-a-time queries timed per search")
    p.add_argument("--jitter", type=float, default=0.3, help="noise of the copies, x per-dimension std")
    p.add_argument("--k", type=int, default=256, help="neighbours the classifier would ask for")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    if args.bundle:
        bundle = read_bundle(args.bundle)
        base = np.asarray(bundle.embeddings, dtype=np.float32)
        base_labels, base_scale = bundle.label_idx, view_scale(bundle.views, VIEW_DISTANCE_FACTOR)
        where = (
            f"bundle {bundle.version} ({len(base):,} real rows x {base.shape[1]}, "
            f"{len(bundle.classes)} classes)"
        )
        if (args.data / "Test").is_dir():
            start = time.perf_counter()
            queries = elsewhere(test_photo_embeddings, args.bundle, args.data, args.test_photos)
            kind = f"{len(queries)} real Test photos ({time.perf_counter() - start:.0f} s to featurize)"
        else:
            base, queries = base[len(base) // 10 :], base[: len(base) // 10]
            base_labels, base_scale = base_labels[len(queries) :], base_scale[len(queries) :]
            kind = f"{len(queries)} held-out bundle rows (no {args.data}/Test)"
    else:
        rows, labels = mixture_rows(20_000 + args.test_photos, 128, 125, args.seed)
        base, base_labels, base_scale = rows[: -args.test_photos], labels[: -args.test_photos], None
        queries = rows[-args.test_photos :]
        where = "SYNTHETIC Gaussian-mixture rows (no --bundle: figures are not of real features)"
        kind = f"{len(queries)} draws of the same mixture"
        print(
            "no --bundle: `make demo` writes a small one to build/demo-artifacts; a job run over "
            "Fruits-360 (python -m batch.cli --input DIR/Training --output OUT) writes one of real size.",
            file=sys.stderr,
        )
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    print(
        f"rows: {where}, then copies + noise of {args.jitter} x per-dim std, seed {args.seed}; "
        f"queries: {kind}; one query at a time, one thread (BLAS, faiss); builds on {os.cpu_count()} "
        f"cores; INDEX_MIN_ROWS {INDEX_MIN_ROWS:,}; faiss {faiss.__version__}",
        flush=True,
    )

    table, tmp = [], Path(tempfile.mkdtemp(prefix="bench-search-"))
    for n in sizes:
        rows, origin = grow(base, n, args.jitter, args.seed + n)
        start = time.perf_counter()
        index = IndexedSearch.build(rows, seed=args.seed)
        build_s = time.perf_counter() - start
        data = index.to_bytes()
        with threadpool_limits(1):
            faiss.omp_set_num_threads(1)
            exact = ExactSearch(rows)
            want_d, want_i = exact.search(queries, 1)
            got_d, got_i = index.search(queries, args.k)
            recall = float(np.mean((got_i[:, 0] == want_i[:, 0]) | (got_d[:, 0] <= want_d[:, 0] + 1e-12)))
            scale = None if base_scale is None else base_scale[origin]
            certain = classes_certain(queries, (got_d, got_i), rows, base_labels[origin], scale)
            ex = timed(exact, queries, 1, args.queries, 20.0)
            one = timed(index, queries, 1, args.queries, 20.0)
            many = timed(index, queries, args.k, args.queries, 20.0)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        table.append((n, rows.shape[1], index.info, build_s, len(data), ex, one, many, recall, certain))
        print(f"  {n:,} rows: done ({build_s:.1f} s build)", flush=True)
        del exact
        np.save(tmp / f"rows-{n}.npy", rows)
        np.save(tmp / f"origin-{n}.npy", origin)
        (tmp / f"index-{n}.bin").write_bytes(data)
        del rows, index, data

    k = args.k
    print(
        f"\n{'rows':>9} {'K':>4} {'lists':>6} {'probe':>5} {'build s':>8} {'index MB':>9} "
        f"{'exact ms p50/p99':>17} {'index k=1 p50/p99':>18} {f'k={k} p50/p99':>15} {'exact/index':>11} "
        f"{'recall@1':>9} {'class 1 / 5 exact':>17}"
    )
    for n, dim, info, build_s, nbytes, ex, one, many, recall, certain in table:
        print(
            f"{n:>9,} {dim:>4} {info.lists:>6} {info.nprobe:>5} {build_s:>8.1f} {nbytes / 2**20:>9.0f} "
            f"{ex[0]:>8.2f}/{ex[1]:<8.2f} {one[0]:>9.2f}/{one[1]:<8.2f} {many[0]:>7.2f}/{many[1]:<7.2f} "
            f"{ex[0] / one[0]:>11.1f} {recall:>9.4f} {certain[0]:>8.3f} /{certain[1]:>6.3f}"
        )
    print(
        f"exact: ExactSearch (float64, every row), timed on {table[-1][5][2]} queries at the largest size "
        f"(a 20 s budget); index: IndexedSearch, k=1 and k={k}; exact/index: the p50s at k=1. "
        "recall@1: the index's nearest row is exact's (or as near). class 1 / 5 exact: share of "
        f"queries whose nearest class / 5 nearest classes (views x {VIEW_DISTANCE_FACTOR}) come out "
        f"of the k={k} neighbours certain and at exact's distance (class_distances_from_neighbours)."
    )

    np.save(tmp / "queries.npy", queries)
    for n in sizes:
        rows_file, origin_file, index_file = (
            str(tmp / f) for f in (f"rows-{n}.npy", f"origin-{n}.npy", f"index-{n}.bin")
        )
        if args.bundle:
            steps = elsewhere(
                service_memory, args.bundle, rows_file, origin_file, index_file, str(tmp / "queries.npy")
            )
        else:
            steps = elsewhere(search_memory, rows_file, index_file)
        who = "the service's steps, " if args.bundle else ""
        print(f"\nmemory of a fresh process loading {n:,} rows ({who}VmRSS, peak VmHWM):", flush=True)
        for step, rss, hwm, note in steps:
            print(f"  {step:<44} {rss:>8.0f} MB  (peak {hwm:.0f} MB)  {note}", flush=True)
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
