"""The resize-only baseline end to end: job with --featurizer pixels:N (with console progress),
then the real service serving that bundle, checked against a numpy nearest neighbour."""

from __future__ import annotations

import logging
import re

import httpx
import numpy as np
import pytest

from batch.progress import format_progress
from models.featurizer import FeaturizerSpec
from models.preprocess import preprocess_image
from tests.conftest import LABELS
from tests.support import LogLines, expected_answer, post_photo, running_service

SIDE = 16
PROGRESS_LINE = re.compile(
    r"^featurize +(\d+)/(\d+) images +[0-9.]+%  (?:[0-9.]+|-) img/s  (ETA .+|done)"
    r"  \(elapsed .+\)$"
)


@pytest.fixture(scope="module")
def pixels_run(dataset, spark, tmp_path_factory):
    from tests.jobs import run_on_training

    root = tmp_path_factory.mktemp("pixels-artifacts")
    spec = FeaturizerSpec.parse(f"pixels:{SIDE}", "imagenet", None)
    logger, handler = logging.getLogger("batch.progress"), LogLines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        result = run_on_training(spark, dataset, root, spec, images_per_partition=8, progress_interval_s=0.2)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return root, result, handler.lines


def test_progress_lines_count_up_to_every_listed_photo(pixels_run):
    _, result, lines = pixels_run
    total = result.manifest.counts.listed
    parsed = [PROGRESS_LINE.match(line) for line in lines]
    assert all(parsed), lines
    done = [int(m.group(1)) for m in parsed]
    assert {int(m.group(2)) for m in parsed} == {total}
    # A start line, at least one line while Spark works (every 0.2 s), and a final one.
    assert len(lines) >= 3, lines
    assert done[0] == 0 and done[-1] == total and done == sorted(done)
    assert lines[-1].endswith(")") and "done" in lines[-1]


def test_progress_line_format():
    line = format_progress("featurize", 1500, 6000, 15.0)
    assert "1500/6000 images" in line and "25.0%" in line
    assert "100.0 img/s" in line and "ETA 45 s" in line
    assert "ETA 1 h 15 min" in format_progress("featurize", 10, 910, 50.0)
    assert "- img/s  ETA ?" in format_progress("featurize", 0, 10, 0.0)


def test_pixels_bundle_has_the_same_format(pixels_run):
    root, result, _ = pixels_run
    m = result.manifest
    assert m.featurizer == FeaturizerSpec(kind="pixels", weights="none", image_size=SIDE)
    assert m.feature_dim == SIDE * SIDE * 3
    vdir = root / "versions" / result.version
    assert (vdir / "report" / "index.html").is_file()
    assert np.load(vdir / "pca_components.npy").shape == (m.pca.k, SIDE * SIDE * 3)


def test_service_serves_the_pixels_bundle(pixels_run, dataset, tmp_path):
    root, result, _ = pixels_run
    vdir = root / "versions" / result.version
    classes = np.load(vdir / "classes.npy")
    photos = sorted((dataset / "Test").rglob("*.jpg"))
    correct = 0
    with running_service({"ARTIFACTS_URI": str(root)}, log_path=tmp_path / "svc.log") as (url, _):
        model = httpx.get(f"{url}/v1/model", timeout=10).json()["model"]
        assert model["featurizer"] == f"pixels:{SIDE}" and model["random_weights"] is False
        entries = httpx.get(f"{url}/v1/classes", timeout=10).json()["classes"]
        fruit_of = {c["label"]: c["fruit"]["id"] for c in entries}
        for photo in photos:
            data = photo.read_bytes()
            resp = post_photo(url, data)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["warning"] is None
            # The baseline's feature is the resized photo's pixels in [0, 1]: nothing learnt.
            x = preprocess_image(data, SIDE).reshape(-1).astype(np.float64) / 255.0
            expected = expected_answer(vdir, x, fruit_of)[0][0]
            assert body["top_k"][0]["label"] == expected, photo
            correct += body["top_k"][0]["label"] == photo.parent.name
    # Chance is 1/6; tiny pixel vectors separate these real fruit photos well.
    assert correct / len(photos) >= 0.6
    assert sorted(classes.tolist()) == LABELS
