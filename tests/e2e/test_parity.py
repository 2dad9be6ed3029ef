"""Train/serve parity: the service computes exactly what the job stored."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import OFF_CENTRE
from tests.support import expected_answer, post_photo


def _version_dir(root: Path) -> Path:
    return root / "versions" / (root / "CURRENT").read_text().strip()


def _embed(url: str, path: Path) -> dict:
    resp = post_photo(url, path.read_bytes(), path="/v1/embed", name=path.name)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_service_embeds_training_photos_exactly_as_the_job(service_url, job_run):
    root, _ = job_run
    vdir = _version_dir(root)
    sources = np.load(vdir / "sources.npy")
    views = np.load(vdir / "views.npy")
    embeddings = np.load(vdir / "embeddings.npy")
    features = pq.read_table(vdir / "features").to_pandas()
    features = features[features["view"] == 0].set_index("uri")
    # One photo per class, spread over the bundle, plus the off-centre photo on a page.
    originals = np.flatnonzero(views == 0)
    picks = [int(originals[i]) for i in np.linspace(0, len(originals) - 1, 8).round().astype(int)]
    off_centre = [i for i in originals if str(sources[i]).endswith(OFF_CENTRE)]
    assert len(off_centre) == 1
    picks.append(int(off_centre[0]))
    for i in picks:
        served = _embed(service_url, Path(str(sources[i])))
        z = np.asarray(served["embedding"])
        assert z.shape == embeddings[i].shape
        assert np.abs(z - embeddings[i]).max() <= 1e-4, sources[i]
        raw = np.asarray(served["features"])
        stored = np.asarray(features.loc[str(sources[i]), "features"])
        assert raw.shape == (2048,)
        assert np.abs(raw - stored).max() <= 1e-4, sources[i]


def test_service_top1_equals_top1_from_job_outputs_on_every_test_photo(service_url, job_run, dataset):
    root, _ = job_run
    vdir = _version_dir(root)
    # The answer recomputed from the raw arrays (tests.support.expected_answer).
    labels = np.load(vdir / "labels.npy")
    features = pq.read_table(vdir / "features").to_pandas()
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == len(labels)
    fruit_of = {
        c["label"]: c["fruit"]["id"]
        for c in httpx.get(f"{service_url}/v1/classes", timeout=30).json()["classes"]
    }

    photos = sorted((dataset / "Test").rglob("*.jpg"))
    assert len(photos) >= 30
    agree = 0
    for photo in photos:
        served = _embed(service_url, photo)
        ranked, p_fruit, _ = expected_answer(vdir, served["features"], fruit_of)
        expected = ranked[0]
        resp = post_photo(service_url, photo.read_bytes(), name=photo.name)
        assert resp.status_code == 200
        assert resp.json()["top_k"][0]["label"] == expected, photo
        assert resp.json()["fruit_confidence"] == pytest.approx(p_fruit, abs=1e-5), photo
        agree += expected == photo.parent.name
    # The features parquet holds every featurized photo and view once, as the bundle's rows.
    stored = sorted(zip(features["uri"], features["view"], strict=True))
    rows = zip(map(str, np.load(vdir / "sources.npy")), np.load(vdir / "views.npy").tolist(), strict=True)
    assert stored == sorted(rows)
    assert agree > len(photos) / 6  # better than chance over 6 classes, even with random weights
