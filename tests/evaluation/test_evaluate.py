"""`python -m evaluation` on the job's bundle and the Test photos, against a plain numpy
nearest-neighbour over the bundle's .npy files and against the live service's answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from models.bundle import read_bundle
from models.catalog import localize
from models.featurizer import FeaturizerSpec, ResNet50Featurizer, featurize_photos
from models.preprocess import preprocess_photo
from tests.support import (
    REPO_ROOT,
    TEST_IMAGE_SIZE,
    TEST_WEIGHTS,
    encode,
    expected_answer,
    expected_embedding,
    post_photo,
)

TOP_K = 3


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def evaluation(job_run, dataset, tmp_path_factory):
    root, _ = job_run
    out = tmp_path_factory.mktemp("eval") / "evaluation.json"
    proc = _run(
        "-m",
        "evaluation",
        "--bundle",
        str(root),
        "--data",
        str(dataset / "Test"),
        "--json",
        str(out),
        "--top-k",
        str(TOP_K),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.fixture(scope="module")
def expected(job_run, dataset):
    """Top-k classes, 'known' and true label of every Test photo, from the raw arrays."""
    root, result = job_run
    vdir = root / "versions" / result.version
    classes = np.load(vdir / "classes.npy").tolist()
    manifest = json.loads((vdir / "manifest.json").read_text())
    bundle = read_bundle(str(root))
    fruit_of = {c: localize(c, bundle.catalog[c], "en").fruit for c in classes}
    photos = sorted((dataset / "Test").rglob("*.jpg"))
    model = ResNet50Featurizer(FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE))
    features = featurize_photos(
        model, [preprocess_photo(p.read_bytes(), TEST_IMAGE_SIZE) for p in photos]
    ).astype(np.float64)
    # "no fruit": nearer to a photo of a flat backdrop (0/128/255 per channel) than to every class
    flats = [
        preprocess_photo(encode(Image.new("RGB", (40, 40), (r, g, b)), "PNG"), TEST_IMAGE_SIZE)
        for r in (0, 128, 255)
        for g in (0, 128, 255)
        for b in (0, 128, 255)
    ]
    flat_features = featurize_photos(model, flats).astype(np.float64)
    empties = np.stack([expected_embedding(vdir, f) for f in flat_features])
    rows = []
    for p, f in zip(photos, features, strict=True):
        ranked, p_fruit, distance = expected_answer(vdir, f, fruit_of)
        to_empty = np.linalg.norm(empties - expected_embedding(vdir, f), axis=1).min()
        rows.append(
            {
                "uri": str(p),
                "label": p.parent.name,
                "top": ranked[:TOP_K],
                "known": bool(p_fruit >= manifest["probe"]["min_confidence"] and distance < to_empty),
            }
        )
    return rows, classes


def test_accuracy_and_unknown_rate_match_a_plain_nearest_neighbour(evaluation, expected):
    ev, _ = evaluation
    rows, _ = expected
    n = len(rows)
    assert ev["photos"] == n == 36 and ev["skipped"] == []
    assert ev["top_k"] == TOP_K
    assert ev["top1_accuracy"] == pytest.approx(sum(r["top"][0] == r["label"] for r in rows) / n)
    assert ev["top_k_accuracy"] == pytest.approx(sum(r["label"] in r["top"] for r in rows) / n)
    assert ev["unknown_rate"] == pytest.approx(sum(not r["known"] for r in rows) / n)
    by_uri = {p["uri"]: p for p in ev["predictions"]}
    for r in rows:
        assert by_uri[r["uri"]]["top_k"] == r["top"], r["uri"]
        assert by_uri[r["uri"]]["known"] == r["known"], r["uri"]


def test_per_class_recall_and_confusion_matrix(evaluation, expected):
    ev, _ = evaluation
    rows, classes = expected
    true_labels = sorted({r["label"] for r in rows})
    assert ev["confusion"]["true_labels"] == true_labels
    assert ev["confusion"]["predicted_labels"] == classes
    matrix = np.zeros((len(true_labels), len(classes)), dtype=int)
    for r in rows:
        matrix[true_labels.index(r["label"]), classes.index(r["top"][0])] += 1
    assert ev["confusion"]["matrix"] == matrix.tolist()
    for label in true_labels:
        mine = [r for r in rows if r["label"] == label]
        assert ev["per_class"][label]["photos"] == len(mine) == 6
        assert ev["per_class"][label]["recall"] == pytest.approx(
            sum(r["top"][0] == label for r in mine) / len(mine)
        )
    assert ev["labels_not_in_bundle"] == []


def test_console_table_lists_every_class(evaluation, expected):
    ev, stdout = evaluation
    assert f"top-1 {ev['top1_accuracy']:.1%}" in stdout
    for label in ev["per_class"]:
        assert f"\n  {label}" in stdout


def test_answers_equal_the_live_service(evaluation, service_url):
    """The command must score exactly what the service would answer for each photo."""
    ev, _ = evaluation
    first_of_each = {}
    for p in ev["predictions"]:
        first_of_each.setdefault(p["label"], p)
    for p in first_of_each.values():
        with open(p["uri"], "rb") as fh:
            resp = post_photo(service_url, fh.read(), params={"top_k": TOP_K})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert [m["label"] for m in body["top_k"]] == p["top_k"]
        assert body["known"] == p["known"]


def test_evaluate_does_not_import_spark():
    proc = _run(
        "-c",
        "import sys, evaluation; sys.exit('pyspark' in sys.modules or 'fastapi' in sys.modules)",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_missing_data_is_an_error_in_words(job_run, tmp_path):
    root, _ = job_run
    proc = _run("-m", "evaluation", "--bundle", str(root), "--data", str(tmp_path / "nope"))
    assert proc.returncode == 1
    assert "evaluation failed" in proc.stderr and "not found" in proc.stderr
