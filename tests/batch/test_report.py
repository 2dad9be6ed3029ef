"""The run report the job writes next to its bundle: files, links, plots and the LOO figure."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

EXPECTED_PNGS = {
    "explained_variance.png",
    "images_per_class.png",
    "projection_2d.png",
    "reliability.png",
    "stages.png",
}


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def _report(job_run):
    root, result = job_run
    vdir = root / "versions" / result.version
    return vdir, vdir / "report", json.loads((vdir / "manifest.json").read_text())


def test_report_is_written_next_to_the_bundle_with_every_plot(job_run):
    vdir, report, manifest = _report(job_run)
    assert manifest["report"] == "report/index.html"
    assert (vdir / manifest["report"]).is_file()
    assert {p.name for p in report.glob("*.png")} == EXPECTED_PNGS
    parser = _Links()
    page = (report / "index.html").read_text(encoding="utf-8")
    parser.feed(page)
    # Relative links only, so the page opens from the file system or a copied folder.
    assert set(parser.images) == EXPECTED_PNGS
    for name in EXPECTED_PNGS:
        with Image.open(report / name) as img:
            img.load()
            assert img.format == "PNG" and min(img.size) > 100


def test_report_states_the_run_facts(job_run):
    _, report, manifest = _report(job_run)
    page = (report / "index.html").read_text(encoding="utf-8")
    assert f"K = {manifest['pca']['k']} of {manifest['feature_dim']}" in page
    shrunk = [w for w in manifest["pca"]["component_weights"] if w < 1]
    assert shrunk and f"the first {len(shrunk)} shrunk to component 4's spread: x {shrunk[0]:.2f}" in page
    for stage in ("featurize", "fit", "write"):
        assert f"<td>{stage}</td>" in page
    # The fixture's corrupt photo is listed with its reason.
    [skipped] = manifest["skipped"]
    assert skipped["uri"].endswith("corrupt_truncated.jpg")
    assert "corrupt_truncated.jpg" in page and skipped["code"] in page
    for label in manifest["class_counts"]:
        assert f"<td>{label}</td>" in page
    assert "RANDOM weights" in page


def test_leave_one_out_accuracy_matches_an_independent_computation(job_run):
    vdir, report, _ = _report(job_run)
    emb = np.load(vdir / "embeddings.npy").astype(np.float64)
    labels = np.load(vdir / "labels.npy")
    sources = np.load(vdir / "sources.npy")
    views = np.load(vdir / "views.npy")
    factor = json.loads((vdir / "manifest.json").read_text())["calibration"]["view_distance_factor"]
    photos = np.flatnonzero(views == 0)
    d = np.linalg.norm(emb[photos, None, :] - emb[None, :, :], axis=2)
    d *= np.where(views > 0, factor, 1.0)[None, :]
    d[sources[photos][:, None] == sources[None, :]] = np.inf  # the photo and its own views
    expected = float(np.mean(labels[d.argmin(1)] == labels[photos]))
    # The scores' calibration on the same held-out answers, 15 equal-width bins, by hand.
    calibration = json.loads((vdir / "manifest.json").read_text())["calibration"]
    classes = sorted(set(labels.tolist()))
    per_class = np.stack([d[:, labels == c].min(1) for c in classes], axis=1)
    logits = -per_class / calibration["temperature"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    conf = p.max(1)
    right = np.array(classes)[p.argmax(1)] == labels[photos]
    bins = np.minimum((conf * 15).astype(int), 14)
    ece = sum(abs(conf[bins == b].mean() - right[bins == b].mean()) * (bins == b).sum() for b in set(bins))
    ece /= len(conf)
    page = (report / "index.html").read_text(encoding="utf-8")
    match = re.search(r'id="loo-accuracy" data-value="([0-9.]+)">([0-9.]+)%', page)
    assert match, "the report must state the leave-one-out accuracy"
    assert float(match.group(1)) == pytest.approx(expected, abs=1e-6)
    assert match.group(2) == f"{100 * expected:.1f}"
    match = re.search(r'id="ece" data-value="([0-9.]+)"', page)
    assert match, "the report must state the expected calibration error"
    assert float(match.group(1)) == pytest.approx(ece, abs=1e-5)
    assert calibration["training_photos_ece"] == pytest.approx(ece, abs=1e-4)


def test_past_its_limit_the_report_judges_a_seeded_sample_balanced_by_class(job_run, tmp_path, monkeypatch):
    import shutil

    from batch import report
    from models.bundle import read_bundle

    root, result = job_run
    copy = tmp_path / "bundles"
    shutil.copytree(root, copy)
    bundle = read_bundle(str(copy), result.version)
    labels, views = bundle.labels, bundle.views
    classes = sorted(set(labels.tolist()))
    counts = {c: int(((labels == c) & (views == 0)).sum()) for c in classes}
    limit = len(classes) * 2  # two photos a class, fewer than every class holds
    assert min(counts.values()) > 2

    queries = report.report_photos(bundle, limit)
    assert np.array_equal(queries, report.report_photos(bundle, limit))  # seeded: the same each run
    assert (views[queries] == 0).all() and len(set(queries.tolist())) == len(queries)
    assert {c: int((labels[queries] == c).sum()) for c in classes} == dict.fromkeys(classes, 2)
    assert len(report.report_photos(bundle, 10_000)) == sum(counts.values())  # under it: every photo

    monkeypatch.setattr(report, "REPORT_PHOTOS", limit)
    index = report.write_report(str(copy), bundle)
    page = (copy / "versions" / result.version / "report" / "index.html").read_text(encoding="utf-8")
    assert index.endswith("report/index.html")
    assert f'id="judged" data-value="{limit}"' in page
    assert f"a seeded sample of the {sum(counts.values())}, at most 2 a class" in page
    # The figure is the share right among the sampled photos, computed here by hand.
    emb = bundle.embeddings.astype(np.float64)
    d = np.linalg.norm(emb[queries, None, :] - emb[None, :, :], axis=2)
    d *= np.where(views > 0, bundle.manifest.calibration.view_distance_factor, 1.0)[None, :]
    d[bundle.sources[queries][:, None] == bundle.sources[None, :]] = np.inf
    expected = float(np.mean(labels[d.argmin(1)] == labels[queries]))
    match = re.search(r'id="loo-accuracy" data-value="([0-9.]+)"', page)
    assert match and float(match.group(1)) == pytest.approx(expected, abs=1e-6)
