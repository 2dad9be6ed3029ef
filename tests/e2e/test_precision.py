"""`--precision bf16`: the job records it, the service runs the bundle's precision, and the
service's features of a training photo equal the job's within bf16's own rounding."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from models.featurizer import FeaturizerSpec, cpu_has_bf16
from tests.jobs import run_on_training
from tests.support import TEST_IMAGE_SIZE, TEST_WEIGHTS, post_photo, running_service

# Tolerance of bf16 parity, derived: the job and the service run the same bf16 model, and
# oneDNN accumulates in fp32, so they can differ only where an activation's rounding to bf16
# flips, by one bf16 unit (2**-8 relative). Bound: relative L2 error of the 2048 features
# <= 2**-8, as if every feature were one rounding apart. (Measured here: 0, as batch-size
# invariant as fp32.) The embedding is a linear map of the standardised features, so it gets
# the same relative bound.
BF16_PARITY = 2.0**-8

pytestmark = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bfloat16 instructions")


@pytest.fixture(scope="module")
def bf16_run(dataset, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16")
    spec = FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE, "bf16")
    # The fp32 bundle's settings (job_run), so that the answers differ by the precision alone.
    result = run_on_training(spark, dataset, root, spec, images_per_partition=24)
    return root, result


@pytest.fixture(scope="module")
def bf16_url(bf16_run, tmp_path_factory):
    root, _ = bf16_run
    log = tmp_path_factory.mktemp("bf16-logs") / "service.log"
    with running_service({"ARTIFACTS_URI": str(root)}, log_path=log) as (url, _proc):
        yield url


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_the_manifest_records_the_precision_and_the_same_weights(bf16_run, job_run):
    _, result = bf16_run
    _, fp32 = job_run
    assert result.manifest.featurizer.precision == "bf16"
    assert fp32.manifest.featurizer.precision == "fp32"
    assert result.manifest.weights.sha256 == fp32.manifest.weights.sha256


def test_service_runs_the_bundles_precision_and_matches_the_job(bf16_run, bf16_url, job_run):
    root, result = bf16_run
    vdir = root / "versions" / result.version
    stored = pq.read_table(vdir / "features").to_pandas()
    stored = stored[stored["view"] == 0].set_index("uri")
    embeddings = np.load(vdir / "embeddings.npy")
    sources = np.load(vdir / "sources.npy").tolist()
    fp32_root, fp32 = job_run
    fp32_features = pq.read_table(fp32_root / "versions" / fp32.version / "features").to_pandas()
    fp32_features = fp32_features[fp32_features["view"] == 0].set_index("uri")
    picks = sorted(set(sources))[:: max(1, len(set(sources)) // 8)]  # photos (a view's row shares its uri)
    for uri in picks:
        served = post_photo(bf16_url, Path(uri).read_bytes(), path="/v1/embed").json()
        assert served["model"]["precision"] == served["model"]["precision_running"] == "bf16"
        raw = np.asarray(served["features"])
        assert _relative(raw, np.asarray(stored.loc[uri, "features"])) <= BF16_PARITY, uri
        z = np.asarray(served["embedding"])
        assert _relative(z, embeddings[sources.index(uri)]) <= BF16_PARITY, uri
        # ...and it is bf16, not fp32 again: close to the fp32 job's features, not equal.
        to_fp32 = _relative(raw, np.asarray(fp32_features.loc[uri, "features"]))
        assert 1e-4 < to_fp32 < 4 * BF16_PARITY, uri


@pytest.fixture(scope="module")
def lite0_urls(dataset, spark, tmp_path_factory):
    """Services of two EfficientNet-Lite0 (ImageNet) bundles that differ by the precision alone."""
    urls = {}
    with contextlib.ExitStack() as stack:
        for precision in ("fp32", "bf16"):
            root = tmp_path_factory.mktemp(f"lite0-{precision}")
            spec = FeaturizerSpec("efficientnet-lite0", "imagenet", 224, precision)
            run_on_training(spark, dataset, root, spec, images_per_partition=24)
            log = tmp_path_factory.mktemp(f"lite0-{precision}-logs") / "service.log"
            service = running_service({"ARTIFACTS_URI": str(root)}, log_path=log)
            urls[precision], _ = stack.enter_context(service)
        yield urls


def test_bf16_answers_agree_with_fp32_on_the_test_photos(lite0_urls, dataset):
    # With real weights: under random weights every class lies about as far from a photo as the
    # next, and bf16's rounding alone reorders them, which says nothing of the product.
    photos = sorted((dataset / "Test").glob("*/*.jpg"))
    agree = 0
    for photo in photos:
        data = photo.read_bytes()
        wide = post_photo(lite0_urls["fp32"], data).json()
        narrow = post_photo(lite0_urls["bf16"], data).json()
        assert narrow["model"]["precision"] == "bf16" and wide["model"]["precision"] == "fp32"
        agree += narrow["top_k"][0]["label"] == wide["top_k"][0]["label"]
    # The bar: top-1 agreement with fp32 on at least 99% of the photos.
    assert agree >= 0.99 * len(photos), (agree, len(photos))
