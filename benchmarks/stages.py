"""`make bench-stages`: a photo's way through the job in ms: decode, framing, views, model, the
crop around a small fruit, projection."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.data import DEFAULT_DATA, require_fruits360
from benchmarks.featurize import pick_photos
from models.featurizer import DEFAULT_IMAGE_SIZE, PRECISIONS

# What each network runs with here: ResNet50's ImageNet weights cannot be downloaded on these
# machines, and random weights cost the same arithmetic.
WEIGHTS = {"resnet50": "random:0", "efficientnet-lite0": "imagenet"}


def ms_per_item(fn: Callable[[], int], min_s: float = 2.0) -> float:
    """Run fn (which returns how many items it did) until min_s has passed: ms per item."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_s or done == 0:
        done += fn()
    return 1000 * elapsed / done


def cpu_stages(blobs: list[bytes], size: int, views: int) -> dict[str, float]:
    """Decode, framing (pad to square + resize) and one augmented view (made and framed), ms each."""
    from models.augment import AugmentSpec, augmented_view, view_rng
    from models.preprocess import open_for_model, to_model_input

    images = [open_for_model(b, size) for b in blobs]
    spec = AugmentSpec(views=max(views, 1))
    out = {
        "decode": ms_per_item(lambda: len([open_for_model(b, size) for b in blobs])),
        "framing": ms_per_item(lambda: len([to_model_input(im, size) for im in images])),
    }

    def one_view() -> int:
        for im, b in zip(images, blobs, strict=True):
            to_model_input(augmented_view(im, spec, view_rng(spec, b, 1)), size)
        return len(images)

    out["view (made + framed)"] = ms_per_item(one_view)
    return out


def model_ms(kind: str, precision: str, photos: list, batch_size: int) -> tuple[float, float, str]:
    """The bare model on the photos' inputs, batches of batch_size, all cores, and the same photos
    through featurize_photos (the model, the feature maps' crops and their model calls):
    (ms per photo, ms per photo, what ran)."""
    from models.featurizer import FeaturizerSpec, build_featurizer, featurize_photos
    from models.preprocess import model_inputs

    inputs = model_inputs(photos)

    spec = FeaturizerSpec(kind, WEIGHTS[kind], inputs.shape[1], precision).validated()
    featurizer = build_featurizer(spec, threads=os.cpu_count())
    batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
    featurizer.featurize(batches[0])  # warm-up (OpenVINO compiles, Keras traces)

    def run() -> int:
        return sum(len(featurizer.featurize(b)) for b in batches)

    photo_batches = [photos[i : i + batch_size] for i in range(0, len(photos), batch_size)]

    def framed() -> int:
        return sum(len(featurize_photos(featurizer, b)) for b in photo_batches)

    return ms_per_item(run, min_s=5.0), ms_per_item(framed, min_s=5.0), featurizer.precision


def projection_ms(dim: int, k: int, n: int = 4096) -> float:
    """models.scoring.project (standardise + PCA) of n vectors, ms per photo."""
    from models.scoring import project

    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, dim)).astype(np.float32)
    mean, scale = features.mean(0), features.std(0) + 1e-3
    components = rng.normal(size=(k, dim)).astype(np.float32)
    return ms_per_item(lambda: len(project(features, mean, scale, components)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--photos", type=int, default=256, help="Training photos spread over the classes")
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--views", type=int, default=None, help="augmented views of the job (default: its own)")
    p.add_argument("--components", type=int, default=256, help="K of the projection (the job's cap)")
    p.add_argument("--featurizers", nargs="+", default=list(WEIGHTS), choices=list(WEIGHTS))
    args = p.parse_args()
    from batch.config import DEFAULT_AUGMENT_VIEWS
    from models.preprocess import preprocess_photo

    views = DEFAULT_AUGMENT_VIEWS if args.views is None else args.views
    data = require_fruits360(args.data, "Training")
    blobs = [ph.read_bytes() for ph in pick_photos(data, args.photos)]
    size = args.image_size
    print(f"{len(blobs)} photos from {data}/Training at {size}px, {os.cpu_count()} cores, ms per photo")
    cpu = cpu_stages(blobs, size, views)
    for name, ms in cpu.items():
        print(f"  {name:<32} {ms:8.2f} ms")
    photos = [preprocess_photo(b, size) for b in blobs]
    models = {}
    for kind in args.featurizers:
        for precision in PRECISIONS:
            ms, framed_ms, ran = model_ms(kind, precision, photos, args.batch_size)
            models[kind, ran] = framed_ms
            print(
                f"  model {kind} {ran} (batch {args.batch_size}) {ms:8.2f} ms  {1000 / ms:7.1f} img/s"
                + (f"  [{WEIGHTS[kind]} weights]" if kind == "resnet50" else "")
            )
            print(f"    with the crop around a small fruit {framed_ms:8.2f} ms  (x{framed_ms / ms:.2f})")
    dims = {"resnet50": 2048, "efficientnet-lite0": 1280}
    proj = {kind: projection_ms(dims[kind], args.components) for kind in args.featurizers}
    for kind, ms in proj.items():
        print(f"  projection {dims[kind]} -> {args.components} ({kind}) {ms:8.3f} ms")
    print(f"per photo with {views} augmented view(s) = decode + framing + views x (view + model) + model,")
    print("  the model with the crop around a small fruit:")
    for (kind, ran), ms in models.items():
        for v in sorted({0, views}):
            total = cpu["decode"] + cpu["framing"] + v * cpu["view (made + framed)"] + (1 + v) * ms
            share = (1 + v) * ms / total
            rate = f"{1000 / total:6.1f} photos/s, model {share:.0%}"
            print(f"  {kind} {ran}, {v} view(s): {total:8.2f} ms  ({rate})")


if __name__ == "__main__":
    main()
