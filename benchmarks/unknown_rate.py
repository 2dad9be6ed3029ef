"""Measures the "unknown" answer on a bundle: false-unknown rate on real Test photos, and how
often clearly-not-fruit images (noise, flat colours, text on white) are still called known.

    python -m benchmarks.unknown_rate --bundle artifacts --data ../shared/data/fruits360/Test
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from models.bundle import read_bundle
from models.classifier import Classifier
from models.featurizer import build_featurizer
from models.scoring import calibrate

FLAT_COLOURS = [
    (255, 255, 255),
    (0, 0, 0),
    (128, 128, 128),
    (255, 0, 0),
    (0, 160, 0),
    (0, 0, 255),
    (250, 220, 40),
    (120, 60, 20),
]
TEXTS = ["INVOICE 2026-11", "hello world", "The quick brown fox", "1234567890", "Lorem ipsum"]


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def not_fruit_images(size: int = 100) -> dict[str, bytes]:
    """Images that are clearly not a fruit photo, named by what they are."""
    out = {}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        out[f"noise-{seed}"] = png(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
    for colour in FLAT_COLOURS:
        out[f"flat-{colour}"] = png(Image.new("RGB", (size, size), colour))
    for i, text in enumerate(TEXTS):
        img = Image.new("RGB", (size * 3, size), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        for row in range(4):
            draw.text((4, 6 + row * 22), text, fill=(0, 0, 0), font_size=18)
        out[f"text-{i}"] = png(img)
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.unknown_rate")
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True, help="a Test folder: <Class>/*.jpg")
    p.add_argument("--per-class", type=int, default=16)
    args = p.parse_args()

    bundle = read_bundle(args.bundle)
    clf = Classifier(bundle, build_featurizer(bundle.manifest.featurizer))
    classes = set(bundle.classes.tolist())
    photos, labels = [], []
    for folder in sorted(Path(args.data).iterdir()):
        if folder.name in classes:
            for f in sorted(folder.glob("*.jpg"))[: args.per_class]:
                photos.append(f.read_bytes())
                labels.append(folder.name)
    others = not_fruit_images()

    def embed(blobs: list[bytes]) -> np.ndarray:
        parts = [
            clf.project(clf.featurize(np.stack([clf.preprocess(b) for b in blobs[i : i + 64]])))
            for i in range(0, len(blobs), 64)
        ]
        return np.concatenate(parts)

    z_test, z_other = embed(photos), embed(list(others.values()))
    label_idx = bundle.label_idx
    print(
        f"bundle {bundle.version}: {len(classes)} classes, {int((bundle.views == 0).sum())} training photos, "
        f"{len(photos)} Test photos, {len(others)} not-fruit images"
    )
    print(f"{'percentile':>10} {'margin':>6} {'false-unknown':>14} {'top1-acc':>9} {'not-fruit known':>16}")
    for percentile, margin in [
        (95, 1.0),
        (99, 1.0),
        (99, 1.25),
        (100, 1.25),
        (99, 1.5),
        (100, 1.5),
        (99, 2.0),
    ]:
        cal = calibrate(
            bundle.embeddings,
            label_idx,
            len(classes),
            groups=bundle.photo_idx,
            views=bundle.views,
            view_factor=bundle.manifest.calibration.view_distance_factor,
            percentile=percentile,
            margin=margin,
        )
        clf.bundle.thresholds = cal.thresholds
        test = clf.classify(z_test, 1)
        other = clf.classify(z_other, 1)
        false_unknown = np.mean([not r.known for r in test])
        accuracy = np.mean([r.label == y for r, y in zip(test, labels, strict=True)])
        known_other = [n for n, r in zip(others, other, strict=True) if r.known]
        print(
            f"{percentile:>10} {margin:>6} {false_unknown:>14.3f} {accuracy:>9.3f} "
            f"{len(known_other):>5}/{len(others)} {','.join(known_other)[:60]}"
        )


if __name__ == "__main__":
    main()
