"""The job's search index (--index ivf): written with its checksum, loaded, answering as exact search."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from models.bundle import SEARCH_INDEX, BundleError, read_bundle
from models.classifier import Classifier
from models.featurizer import FeaturizerSpec, build_featurizer
from models.manifest import Search
from models.search import INDEX_MIN_ROWS, IndexedSearch
from tests.support import TEST_IMAGE_SIZE, TEST_WEIGHTS


@pytest.fixture(scope="module")
def indexed_run(dataset, spark, tmp_path_factory):
    """The real job over the fixture photos with the index forced: (root, version folder)."""
    from tests.jobs import run_on_training

    root = tmp_path_factory.mktemp("indexed")
    spec = FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE)
    result = run_on_training(spark, dataset, root, spec, images_per_partition=24, search_index="ivf")
    return root, root / "versions" / result.version


@pytest.fixture(scope="module")
def classifiers(indexed_run):
    """(indexed, exact) classifiers over the same bundle; the exact one without its index."""
    root, _ = indexed_run
    bundle = read_bundle(str(root))
    featurizer = build_featurizer(bundle.manifest.featurizer)
    manifest = bundle.manifest.model_copy(update={"search": Search()})
    exact = dataclasses.replace(bundle, manifest=manifest, search_index=None)
    return Classifier(bundle, featurizer), Classifier(exact, featurizer)


def test_the_job_writes_the_index_listed_with_its_digest(indexed_run):
    _, vdir = indexed_run
    manifest = json.loads((vdir / "manifest.json").read_text())
    data = (vdir / SEARCH_INDEX).read_bytes()
    entry = manifest["files"][SEARCH_INDEX]
    assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    search = manifest["search"]
    assert (search["kind"], search["chosen_by"], search["file"]) == ("faiss-ivf-flat", "ivf", SEARCH_INDEX)
    rows = np.load(vdir / "embeddings.npy")
    info = IndexedSearch.from_bytes(data).info
    assert (info.rows, info.dim) == rows.shape
    assert (search["lists"], search["nprobe"], search["seed"]) == (info.lists, info.nprobe, info.seed)


def test_a_small_job_searches_exactly_by_default_and_auto_indexes_from_the_threshold_on(job_run):
    from batch.write import wants_index

    root, result = job_run
    assert result.manifest.search.kind == "exact" and result.manifest.search.chosen_by == "auto"
    assert not wants_index("auto", INDEX_MIN_ROWS - 1) and wants_index("auto", INDEX_MIN_ROWS)
    assert not wants_index("exact", 10 * INDEX_MIN_ROWS) and wants_index("ivf", 10)
    vdir = Path(root) / "versions" / result.version
    assert not (vdir / SEARCH_INDEX).exists()
    assert SEARCH_INDEX not in result.manifest.files
    assert read_bundle(str(root)).search_index is None


def test_a_bundle_without_a_search_field_loads_and_searches_exactly(indexed_run, tmp_path):
    """A bundle written before the index existed: no `search` in its manifest, no index file."""
    root, vdir = indexed_run
    copy = tmp_path / "versions" / vdir.name
    copy.mkdir(parents=True)
    for f in vdir.iterdir():
        if f.is_file() and f.name not in (SEARCH_INDEX, "manifest.json"):
            (copy / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((vdir / "manifest.json").read_text())
    del manifest["search"], manifest["files"][SEARCH_INDEX]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "CURRENT").write_text(vdir.name + "\n")
    bundle = read_bundle(str(tmp_path))
    assert bundle.search_index is None and bundle.manifest.search.kind == "exact"


def _copy_version(vdir: Path, dest: Path) -> Path:
    copy = dest / "versions" / vdir.name
    copy.mkdir(parents=True)
    for f in vdir.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    (dest / "CURRENT").write_text(vdir.name + "\n")
    return copy


def test_a_corrupted_index_fails_the_bundle_load(indexed_run, tmp_path):
    _, vdir = indexed_run
    copy = _copy_version(vdir, tmp_path)
    data = bytearray((copy / SEARCH_INDEX).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / SEARCH_INDEX).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"checksum mismatch in {SEARCH_INDEX}"):
        read_bundle(str(tmp_path))


def test_an_index_the_manifest_vouches_for_but_faiss_cannot_use_is_refused(indexed_run, tmp_path):
    """Bytes whose manifest digest matches but whose own header checksum does not."""
    _, vdir = indexed_run
    copy = _copy_version(vdir, tmp_path)
    data = bytearray((copy / SEARCH_INDEX).read_bytes())
    data[-1] ^= 0xFF
    (copy / SEARCH_INDEX).write_bytes(bytes(data))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][SEARCH_INDEX]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unusable search_index.bin .*checksum mismatch"):
        read_bundle(str(tmp_path))


def test_a_missing_index_file_fails_the_bundle_load(indexed_run, tmp_path):
    _, vdir = indexed_run
    copy = _copy_version(vdir, tmp_path)
    (copy / SEARCH_INDEX).unlink()
    with pytest.raises(BundleError, match=f"cannot read {SEARCH_INDEX}"):
        read_bundle(str(tmp_path))


@pytest.fixture(scope="module")
def photo_embeddings(classifiers, dataset):
    """The committed Test photos and their embeddings (the exact classifier's model and PCA)."""
    _, exact = classifiers
    photos = sorted((dataset / "Test").rglob("*.jpg"))
    return photos, exact.project(exact.featurize([exact.preprocess(p.read_bytes()) for p in photos]))


def assert_shown_as_exact(photos, got, want) -> None:
    """Same answer, known, classes shown, and their distances (measured over their own rows)."""
    for photo, g, w in zip(photos, got, want, strict=True):
        assert (g.label, g.known) == (w.label, w.known), photo
        assert [m.label for m in g.top_k] == [m.label for m in w.top_k], photo
        np.testing.assert_allclose([m.distance for m in g.top_k], [m.distance for m in w.top_k], rtol=1e-9)


def test_indexed_answers_equal_exact_answers_on_the_test_photos(classifiers, photo_embeddings):
    indexed, exact = classifiers
    assert (indexed.search_kind, exact.search_kind) == ("faiss-ivf-flat", "exact")
    photos, embeddings = photo_embeddings
    assert len(photos) >= 30
    got, want = indexed.classify(embeddings, 5), exact.classify(embeddings, 5)
    assert_shown_as_exact(photos, got, want)
    for photo, g, w in zip(photos, got, want, strict=True):
        assert [e.source for m in g.top_k for e in m.examples] == [
            e.source for m in w.top_k for e in m.examples
        ], photo
        np.testing.assert_allclose(g.scores, w.scores, rtol=1e-6, atol=1e-12)


def test_the_index_finds_exact_search_nearest_row_for_the_test_photos(indexed_run, photo_embeddings):
    """Recall@1 against exact search on the committed Test photos (bench-search measures it at
    100k and 1M rows)."""
    from models.search import ExactSearch

    root, _ = indexed_run
    bundle = read_bundle(str(root))
    _, embeddings = photo_embeddings
    want_d, want_i = ExactSearch(bundle.embeddings).search(embeddings, 1)
    got_d, got_i = bundle.search_index.search(embeddings, 1)
    recall = np.mean((got_i[:, 0] == want_i[:, 0]) | (got_d[:, 0] <= want_d[:, 0] + 1e-12))
    assert recall >= 0.99


def test_with_few_neighbours_the_shown_classes_are_still_measured_exactly(classifiers, photo_embeddings):
    """8 neighbours leave most classes absent or uncertain: the answer must still be exact's."""
    indexed, exact = classifiers
    few = Classifier(indexed.bundle, indexed.featurizer, neighbours=8)
    photos, embeddings = photo_embeddings
    assert_shown_as_exact(photos, few.classify(embeddings, 3), exact.classify(embeddings, 3))
    with pytest.raises(ValueError, match="neighbours must be >= 1"):
        Classifier(indexed.bundle, indexed.featurizer, neighbours=0)


def test_the_index_option_reaches_the_job_config_and_bad_values_are_refused(capsys):
    from batch.cli import build_parser, config_from_args
    from batch.config import JobConfig

    base = ["--input", "in", "--output", "out"]
    assert config_from_args(build_parser().parse_args(base)).search_index == "auto"
    assert config_from_args(build_parser().parse_args([*base, "--index", "ivf"])).search_index == "ivf"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--index", "hnsw"])
    assert "invalid choice: 'hnsw'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--index must be one of auto, exact, ivf"):
        JobConfig(input_uri="in", output_uri="out", search_index="hnsw")


def test_the_service_loads_the_index_and_shows_it_in_model_info(indexed_run, dataset, classifiers, tmp_path):
    import httpx

    from tests.support import post_photo, running_service

    root, _ = indexed_run
    _, exact = classifiers
    photo = sorted((dataset / "Test" / "Banana").glob("*.jpg"))[0].read_bytes()
    with running_service({"ARTIFACTS_URI": str(root)}, log_path=tmp_path / "service.log") as (url, _proc):
        search = httpx.get(f"{url}/v1/model", timeout=30).json()["search"]
        resp = post_photo(url, photo)
    assert (search["kind"], search["chosen_by"]) == ("faiss-ivf-flat", "ivf")
    assert search["lists"] >= 1 and search["nprobe"] >= 1
    assert resp.status_code == 200, resp.text
    want = exact.classify(exact.project(exact.featurize([exact.preprocess(photo)])), 1)[0]
    body = resp.json()
    assert (body["known"], body["top_k"][0]["label"]) == (want.known, want.label)


@pytest.mark.parametrize("max_runs", [32, 0], ids=["runs as slices", "one gathered copy"])
def test_rows_in_any_order_are_measured_as_exact_measures_them(
    classifiers, photo_embeddings, monkeypatch, max_runs
):
    """The job writes a class's rows together (sorted by URI); a bundle whose rows are shuffled
    (each class in many runs) must answer the same, read through slices or through one copy."""
    import models.classifier

    indexed, exact = classifiers
    bundle = indexed.bundle
    order = np.random.default_rng(0).permutation(len(bundle.labels))
    shuffled = dataclasses.replace(
        bundle,
        embeddings=bundle.embeddings[order],
        labels=bundle.labels[order],
        sources=bundle.sources[order],
        views=bundle.views[order],
        search_index=IndexedSearch.build(np.asarray(bundle.embeddings[order], dtype=np.float32), seed=0),
    )
    monkeypatch.setattr(models.classifier, "_MAX_RUNS", max_runs)
    mixed = Classifier(shuffled, indexed.featurizer, neighbours=8)
    assert max(len(r) for r in mixed._runs) > 1  # the shuffle split the classes
    photos, embeddings = photo_embeddings
    got, want = mixed.classify(embeddings, 3), exact.classify(embeddings, 3)
    assert_shown_as_exact(photos, got, want)
    for photo, g, w in zip(photos, got, want, strict=True):
        assert [e.source for m in g.top_k for e in m.examples] == [
            e.source for m in w.top_k for e in m.examples
        ], photo
