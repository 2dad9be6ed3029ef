"""Scores a bundle on a labelled photo folder or S3 prefix through the service's own classifier."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from models.bundle import read_bundle
from models.classifier import Classifier
from models.featurizer import DEFAULT_BATCH_SIZE, build_featurizer
from models.preprocess import ImageError
from models.storage import list_photos, storage_for

log = logging.getLogger("evaluation")

CLI_DESCRIPTION = (
    "Evaluate a bundle on labelled photos (<data>/<class>/*.jpg) through the service's "
    "classification path; prints a table and optionally writes JSON."
)


@dataclass(frozen=True)
class Prediction:
    uri: str
    label: str  # the true class: the photo's folder
    predicted: str
    known: bool
    top_k: list[str]


@dataclass
class Evaluation:
    bundle_version: str
    featurizer: str
    random_weights: bool
    data_uri: str
    top_k: int
    photos: int
    top1_accuracy: float
    top_k_accuracy: float
    unknown_rate: float
    per_class: dict[str, dict]  # label -> photos, recall (top-1), top_k_recall, unknown
    confusion: dict  # true_labels (rows), predicted_labels (columns), matrix
    labels_not_in_bundle: list[str]
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    predictions: list[Prediction] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def load_classifier(bundle_uri: str, weights_file: str | None = None) -> Classifier:
    """The bundle's classifier built as the service builds it: the featurizer from the manifest."""
    bundle = read_bundle(bundle_uri)
    return Classifier(bundle, build_featurizer(bundle.manifest.featurizer.with_weights_file(weights_file)))


def predict(
    classifier: Classifier, photos: list[tuple[str, str]], top_k: int, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[list[Prediction], list[dict]]:
    """Classify every photo with the classifier's steps: preprocess, featurize, project, classify."""
    predictions, skipped = [], []
    started, last_note = time.perf_counter(), time.perf_counter()
    for start in range(0, len(photos), batch_size):
        batch, inputs = [], []
        for uri, label in photos[start : start + batch_size]:
            try:
                inputs.append(classifier.preprocess(storage_for(uri).read_bytes(uri)))
                batch.append((uri, label))
            except ImageError as exc:
                skipped.append({"uri": uri, "code": exc.code, "error": exc.message})
            except OSError as exc:
                skipped.append({"uri": uri, "code": "unreadable", "error": str(exc)})
        if not inputs:
            continue
        results = classifier.classify(classifier.project(classifier.featurize(inputs)), top_k)
        for (uri, label), result in zip(batch, results, strict=True):
            predictions.append(
                Prediction(uri, label, result.label, result.known, [m.label for m in result.top_k])
            )
        if time.perf_counter() - last_note > 5:
            done = start + len(inputs)
            rate = done / (time.perf_counter() - started)
            log.info("evaluated %d/%d photos, %.1f img/s", done, len(photos), rate)
            last_note = time.perf_counter()
    return predictions, skipped


def score(predictions: list[Prediction], classes: list[str], top_k: int) -> dict:
    """Accuracy, per-class recall, unknown rate and confusion matrix of a list of predictions."""
    n = len(predictions)
    true_labels = sorted({p.label for p in predictions})
    row = {label: i for i, label in enumerate(true_labels)}
    col = {label: j for j, label in enumerate(classes)}
    matrix = np.zeros((len(true_labels), len(classes)), dtype=np.int64)
    per_class = {
        label: {"photos": 0, "correct": 0, "top_k_correct": 0, "unknown": 0} for label in true_labels
    }
    for p in predictions:
        matrix[row[p.label], col[p.predicted]] += 1
        entry = per_class[p.label]
        entry["photos"] += 1
        entry["correct"] += p.predicted == p.label
        entry["top_k_correct"] += p.label in p.top_k[:top_k]
        entry["unknown"] += not p.known
    for entry in per_class.values():
        entry["recall"] = entry["correct"] / entry["photos"]
        entry["top_k_recall"] = entry["top_k_correct"] / entry["photos"]
    return {
        "photos": n,
        "top1_accuracy": sum(p.predicted == p.label for p in predictions) / n if n else 0.0,
        "top_k_accuracy": sum(p.label in p.top_k[:top_k] for p in predictions) / n if n else 0.0,
        "unknown_rate": sum(not p.known for p in predictions) / n if n else 0.0,
        "per_class": per_class,
        "confusion": {
            "true_labels": true_labels,
            "predicted_labels": list(classes),
            "matrix": matrix.tolist(),
        },
        "labels_not_in_bundle": [label for label in true_labels if label not in col],
    }


def evaluate(
    bundle_uri: str, data_uri: str, *, top_k: int = 5, weights_file: str | None = None
) -> Evaluation:
    # First: a wrong path fails before the model builds.
    photos = [(f.uri, label) for f, label in list_photos(data_uri)]
    if not photos:
        raise ValueError(f"no .jpg/.jpeg/.png photos under {data_uri}")
    classifier = load_classifier(bundle_uri, weights_file)
    start = time.perf_counter()
    predictions, skipped = predict(classifier, photos, top_k)
    seconds = time.perf_counter() - start
    return Evaluation(
        bundle_version=classifier.version,
        featurizer=classifier.featurizer.spec.name,
        random_weights=classifier.random_weights,
        data_uri=data_uri,
        top_k=top_k,
        skipped=skipped,
        seconds=round(seconds, 3),
        predictions=predictions,
        **score(predictions, classifier.bundle.classes.tolist(), top_k),
    )


def format_table(ev: Evaluation, confusions: int = 10) -> str:
    """The console report: headline figures, per-class recall, the most frequent confusions."""
    lines = [
        f"bundle {ev.bundle_version} ({ev.featurizer}"
        + (", RANDOM weights" if ev.random_weights else "")
        + f") on {ev.data_uri}",
        f"  photos {ev.photos}  skipped {len(ev.skipped)}  "
        f"top-1 {ev.top1_accuracy:.1%}  top-{ev.top_k} {ev.top_k_accuracy:.1%}  "
        f"unknown {ev.unknown_rate:.1%}  ({ev.seconds:.1f} s)",
        "",
        f"  {'class':<28} {'photos':>6} {'recall':>7} {f'top-{ev.top_k}':>7} {'unknown':>8}",
    ]
    for label, c in ev.per_class.items():
        lines.append(
            f"  {label[:28]:<28} {c['photos']:>6} {c['recall']:>7.1%} "
            f"{c['top_k_recall']:>7.1%} {c['unknown'] / c['photos']:>8.1%}"
        )
    m = np.array(ev.confusion["matrix"])
    pairs = [
        (int(m[i, j]), t, p)
        for i, t in enumerate(ev.confusion["true_labels"])
        for j, p in enumerate(ev.confusion["predicted_labels"])
        if t != p and m[i, j]
    ]
    if pairs:
        lines += ["", "  most frequent confusions (true -> predicted):"]
        for count, t, p in sorted(pairs, key=lambda x: (-x[0], x[1], x[2]))[:confusions]:
            lines.append(f"    {count:>4}  {t} -> {p}")
    if ev.labels_not_in_bundle:
        lines += ["", f"  classes the bundle does not know: {', '.join(ev.labels_not_in_bundle)}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=CLI_DESCRIPTION)
    parser.add_argument("--bundle", required=True, help="bundle root: folder or s3://bucket/prefix")
    parser.add_argument("--data", required=True, help="labelled photos: folder or s3:// prefix")
    parser.add_argument("--json", default=None, help="write the full evaluation here (path or s3://)")
    parser.add_argument("--top-k", type=int, default=5, help="k of the top-k accuracy")
    parser.add_argument(
        "--weights-file",
        default=None,
        help="Keras weights file for a bundle built with weights that cannot be "
        "downloaded here (as the service's WEIGHTS_FILE)",
    )
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ev = evaluate(args.bundle, args.data, top_k=args.top_k, weights_file=args.weights_file)
    except Exception as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        return 1
    print(format_table(ev))
    if args.json:
        data = json.dumps(ev.to_dict(), indent=2).encode()
        storage_for(args.json).write_bytes(args.json, data)
        print(f"\nwrote {args.json}")
    return 0
