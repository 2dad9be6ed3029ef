"""Writes a run's HTML report with PNG plots into its bundle version folder (local or S3)."""

from __future__ import annotations

import html
import io
import logging

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.bundle import ArtifactBundle, version_uri
from models.manifest import RANDOM_WEIGHTS_WARNING, Stage
from models.scoring import (
    class_distances,
    expected_calibration_error,
    plain_coordinates,
    scores_from_distances,
    view_scale,
)
from models.storage import Storage, join, storage_for

log = logging.getLogger("batch.report")

REPORT_DIR = "report"
INDEX = "index.html"


# Photos the report classifies held out: each is a search over every reference row, so the
# report's cost grows with photos x rows. Past this many, a seeded sample, balanced by class.
REPORT_PHOTOS = 6000


def report_photos(bundle: ArtifactBundle, limit: int = REPORT_PHOTOS, seed: int = 0) -> np.ndarray:
    """Row indices of the training photos (not their views) the report classifies: all of them
    up to `limit`; past it, at most ceil(limit / classes) of each class, drawn with `seed`."""
    photos = np.flatnonzero(bundle.views == 0)
    if len(photos) <= limit:
        return photos
    per_class = -(-limit // len(bundle.classes))
    rng = np.random.default_rng(seed)
    label_idx = bundle.label_idx[photos]
    chosen = [
        rng.choice(members, min(per_class, len(members)), replace=False)
        for members in (photos[label_idx == c] for c in range(len(bundle.classes)))
    ]
    return np.sort(np.concatenate(chosen))


def held_out_answers(bundle: ArtifactBundle, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class distances of the training photos `queries` (row indices) classified against the
    OTHER photos (their own augmented views left out too), exactly as the service classifies a
    new photo; and their true classes."""
    label_idx, groups = bundle.label_idx, bundle.photo_idx
    dist, _ = class_distances(
        bundle.embeddings[queries],
        bundle.embeddings,
        label_idx,
        len(bundle.classes),
        query_groups=groups[queries],
        row_groups=groups,
        row_scale=view_scale(bundle.views, bundle.manifest.calibration.view_distance_factor),
    )
    return dist, label_idx[queries]


def leave_one_out_accuracy(dist: np.ndarray, truth: np.ndarray, n_classes: int) -> tuple[float, np.ndarray]:
    """Share of held-out answers (`held_out_answers`) whose nearest class is their own, and the
    per-class share. A class with one photo can never be right."""
    correct = dist.argmin(1) == truth
    per_class = np.array([correct[truth == c].mean() for c in range(n_classes)])
    return float(correct.mean()), per_class


def reliability_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], bins: int = 15) -> bytes:
    """Accuracy against confidence in equal-width bins, one line per named set of answers
    (confidence, correct); the diagonal is perfect calibration. ECE in the legend."""
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for name, (confidence, correct) in curves.items():
        which = np.minimum((np.asarray(confidence) * bins).astype(int), bins - 1)
        xs, ys = [], []
        for b in range(bins):
            inside = which == b
            if inside.sum() >= 5:  # a bin of one or two answers says nothing
                xs.append(float(np.mean(np.asarray(confidence)[inside])))
                ys.append(float(np.mean(np.asarray(correct)[inside])))
        ece = expected_calibration_error(confidence, correct, bins)
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {ece:.3f}, n={len(confidence)})")
    ax.set_xticks(edges[::3])
    ax.set_xlabel("confidence (score of the top answer)")
    ax.set_ylabel("share of answers that are right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _weights_line(rank: int, weights: list[float]) -> str:
    shrunk = [f"{w:.2f}" for w in weights if w < 1]
    if not shrunk:
        return "none: plain PCA coordinates"
    return f"the first {len(shrunk)} shrunk to component {rank}'s spread: x {', '.join(shrunk)}"


def explained_variance_plot(ratios: list[float], k: int, target: float | None) -> bytes:
    ratios = np.asarray(ratios, dtype=float)
    n = np.arange(1, len(ratios) + 1)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.bar(n, ratios, color="#9ecae1", label="per component")
    ax.plot(n, np.cumsum(ratios), color="#08519c", label="cumulative")
    ax.axvline(k, color="#d62728", linestyle="--", label=f"chosen K = {k}")
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", label=f"target {target:.0%}")
    ax.set_xlabel("number of PCA components")
    ax.set_ylabel("explained variance (share)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Explained variance of the standardised features")
    ax.legend(loc="center right")
    return _png(fig)


def class_counts_plot(counts: dict[str, int]) -> bytes:
    labels = list(counts)
    fig = Figure(figsize=(7, max(2.5, 0.18 * len(labels) + 1)))
    ax = fig.add_subplot()
    ax.barh(labels, [counts[label] for label in labels], color="#74c476")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7 if len(labels) > 30 else 9)
    ax.set_xlabel("training photos")
    ax.set_title("Images per class")
    return _png(fig)


def projection_plot(embeddings: np.ndarray, label_idx: np.ndarray, classes: list[str]) -> bytes:
    xy = (
        embeddings[:, :2]
        if embeddings.shape[1] >= 2
        else np.column_stack([embeddings[:, 0], np.zeros(len(embeddings))])
    )
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()

    # tab20 keeps few classes apart; beyond 20 a continuous map at least gives neighbours
    # in the sorted class list (often varieties of one fruit) neighbouring hues.
    def colour(c: int):
        if len(classes) <= 20:
            return matplotlib.colormaps["tab20"](c)
        return matplotlib.colormaps["turbo"](c / (len(classes) - 1))

    for c, label in enumerate(classes):
        pts = xy[label_idx == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=8, color=colour(c), label=label, alpha=0.8)
    ax.set_xlabel("PCA component 1")
    ax.set_ylabel("PCA component 2")
    ax.set_title("Training photos on the first two PCA components")
    if len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    return _png(fig)


def stages_plot(stages: dict[str, Stage]) -> bytes:
    names = list(stages)
    seconds = [stages[s].seconds for s in names]
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    bars = ax.bar(names, seconds, color="#fd8d3c")
    for bar, name in zip(bars, names, strict=True):
        rate = stages[name].images_per_s
        if rate:
            ax.annotate(
                f"{rate:.0f} img/s",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_ylabel("seconds")
    ax.set_title("Time per stage")
    return _png(fig)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(
    bundle: ArtifactBundle,
    loo: float,
    loo_per_class: np.ndarray,
    images: dict[str, str],
    ece: float,
    judged: np.ndarray,
) -> str:
    """The page; `judged`: the row indices of the photos classified held out (report_photos)."""
    m = bundle.manifest
    e = html.escape
    banner = f'<p class="warn">{e(RANDOM_WEIGHTS_WARNING)}</p>' if m.weights.random else ""
    stage_rows = [
        [
            e(name),
            f"{row.seconds:.1f}",
            str(row.images),
            f"{row.images_per_s:.1f}" if row.images_per_s else "",
        ]
        for name, row in m.stages.items()
    ]
    skipped_html = (
        _table(["file", "code", "reason"], [[e(s.uri), e(s.code), e(s.error)] for s in m.skipped])
        if m.skipped
        else "<p>None: every listed photo was featurized.</p>"
    )
    judged_per_class = np.bincount(bundle.label_idx[judged], minlength=len(bundle.classes))
    loo_rows = [
        [e(label), str(m.class_counts.get(label, 0)), str(n), f"{acc:.1%}"]
        for label, n, acc in zip(bundle.classes.tolist(), judged_per_class, loo_per_class, strict=True)
    ]
    photos = m.counts.featurized
    sample = (
        f" (a seeded sample of the {photos}, at most {judged_per_class.max()} a class)"
        if len(judged) < photos
        else ""
    )
    pca = m.pca
    summary = _table(
        ["item", "value"],
        [
            ["created", e(m.created_at)],
            ["input", e(m.input_uri)],
            ["featurizer", e(f"{m.featurizer.kind} at {m.image_size} px, weights {m.weights.spec}")],
            [
                "photos",
                f"{m.counts.featurized} featurized, {m.counts.skipped} skipped, {m.counts.classes} classes",
            ],
            [
                "PCA",
                f"K = {pca.k} of {m.feature_dim} features, keeps "
                f"{pca.explained_variance_kept:.1%} of the variance ({e(pca.chosen_by)})",
            ],
            ["component weights", _weights_line(pca.spread_ceiling_rank, pca.component_weights)],
            [
                "distance",
                "Euclidean in the weighted components"
                if not pca.within_class_shrink
                else "under the photos' within-class metric: a direction along which photos of one "
                f"class spread as much as the median counts 1/sqrt(1 + {pca.within_class_shrink:g})",
            ],
            [
                "leave-one-out nearest-class accuracy",
                f'<span id="loo-accuracy" data-value="{loo:.6f}">{loo:.1%}</span> '
                f'of <span id="judged" data-value="{len(judged)}">{len(judged)}</span> photos{sample}',
            ],
            [
                "augmented views",
                f"{m.augment.views} per photo, {m.counts.rows} reference rows",
            ],
            [
                "score calibration",
                f"temperature {m.calibration.temperature:.4g}; expected calibration error "
                f'<span id="ece" data-value="{ece:.6f}">{ece:.3f}</span> (15 bins, held-out training '
                f"photos); answers below confidence {m.calibration.min_confidence} are unknown",
            ],
        ],
    )
    figures = "".join(
        f'<figure><img src="{e(src)}" alt="{e(alt)}"><figcaption>{e(alt)}</figcaption></figure>'
        for src, alt in images.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Run report {e(bundle.version)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: left; }}
figure {{ margin: 1rem 0; }} img {{ max-width: 100%; }}
.warn {{ background: #fff3cd; border: 1px solid #e0c36c; padding: 0.5rem; }}
</style></head><body>
<h1>Run report: bundle {e(bundle.version)}</h1>
{banner}
<h2>Summary</h2>
{summary}
<h2>Plots</h2>
{figures}
<h2>Time per stage</h2>
{_table(["stage", "seconds", "images", "images/s"], stage_rows)}
<h2>Skipped files</h2>
{skipped_html}
<h2>Leave-one-out nearest-class accuracy per class</h2>
<p>Each training photo judged is classified against all the others (itself and its views left
out), exactly as the service classifies a new photo: the class of the nearest photo wins.</p>
{_table(["class", "photos", "judged", "accuracy"], loo_rows)}
</body></html>
"""


def write_report(root: str, bundle: ArtifactBundle, storage: Storage | None = None) -> str:
    """Write report/index.html and its PNGs into the version folder; returns the index URI."""
    storage = storage or storage_for(root)
    m = bundle.manifest
    target = join(version_uri(root, bundle.version), REPORT_DIR)
    queries = report_photos(bundle, REPORT_PHOTOS)
    dist, truth = held_out_answers(bundle, queries)
    loo, loo_per_class = leave_one_out_accuracy(dist, truth, len(bundle.classes))
    scores = scores_from_distances(dist, m.calibration.temperature)
    confidence, correct = scores.max(1), scores.argmax(1) == truth
    ece = expected_calibration_error(confidence, correct)
    m.calibration.training_photos_ece = round(ece, 4)
    pngs = {
        "explained_variance.png": (
            "Explained variance by number of components, chosen K marked",
            explained_variance_plot(m.pca.explained_variance_ratio, m.pca.k, m.pca.variance_target),
        ),
        "images_per_class.png": ("Training images per class", class_counts_plot(m.class_counts)),
        "projection_2d.png": (
            "Training rows on the first two PCA components, coloured by class",
            projection_plot(
                plain_coordinates(bundle.embeddings, bundle.plain_map),
                bundle.label_idx,
                bundle.classes.tolist(),
            ),
        ),
        "reliability.png": (
            "Reliability of the scores: training photos classified leave-one-photo-out",
            reliability_plot({"training photos, held out": (confidence, correct)}),
        ),
        "stages.png": ("Time and images/s per stage", stages_plot(m.stages)),
    }
    for name, (_, data) in pngs.items():
        storage.write_bytes(join(target, name), data)
    alts = {n: alt for n, (alt, _) in pngs.items()}
    page = render_html(bundle, loo, loo_per_class, alts, ece, queries)
    index = join(target, INDEX)
    storage.write_bytes(index, page.encode("utf-8"))
    log.info("report written to %s (leave-one-out accuracy %.1f%%)", index, 100 * loo)
    return index


def run_report(root: str, bundle: ArtifactBundle) -> str | None:
    """The job's call: the report's path inside the version, or None if it could not be made.

    A failed report is logged, not raised: the bundle is good and the pointer may still move.
    """
    try:
        write_report(root, bundle)
    except Exception as exc:  # noqa: BLE001 - plots must never cost a finished model
        log.warning("run report not written: %s: %s", type(exc).__name__, exc)
        return None
    return f"{REPORT_DIR}/{INDEX}"
