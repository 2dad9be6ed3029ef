"""`make bench-scale`: the default job end to end at Fruits-360's full size, against its featurize floor.

The floor is photos / the bare model's img/s, measured in the same run on framed inputs (no
decode, no Spark): the least time featurizing alone could take. Where the data folder holds
fewer photos than asked, seeded jittered copies make up the count (and the output says so).
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from benchmarks.data import DEFAULT_DATA
from models.featurizer import DEFAULT_BATCH_SIZE, DEFAULT_IMAGE_SIZE

FULL_SIZE = 67_692  # Fruits-360's training photos (the 100x100 release)
# The job's own default featurizer, resnet50 with ImageNet weights, is a download these machines
# cannot make; efficientnet-lite0's ImageNet weights ship with the install.
DEFAULT_FEATURIZER = "efficientnet-lite0"


def source_photos(data: Path) -> list[Path]:
    """The photos of `data`: its Training/ split when it is a Fruits-360 folder, else all of it."""
    root = data / "Training" if (data / "Training").is_dir() else data
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        sys.exit(f"no photos under {root}")
    return photos


def jittered(photo: bytes, rng: np.random.Generator) -> bytes:
    """A new photo of the same fruit: shifted a few pixels on white, relit a little, re-encoded."""
    img = Image.open(io.BytesIO(photo)).convert("RGB")
    dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
    moved = Image.new("RGB", img.size, (255, 255, 255))
    moved.paste(img, (dx, dy))
    moved = ImageEnhance.Brightness(moved).enhance(float(rng.uniform(0.9, 1.1)))
    out = io.BytesIO()
    moved.save(out, "JPEG", quality=int(rng.integers(85, 96)))
    return out.getvalue()


def build_input(photos: list[Path], n: int, dest: Path, seed: int) -> tuple[Path, int]:
    """dest/<class>/*.jpg holding n photos: the originals (n of them, class by class in turn, when
    there are more), then jittered copies of them in turn. Kept between runs of the same
    (n, seed); returns (folder, copies made)."""
    folder = dest / f"input-{n}-seed{seed}"
    copies = max(0, n - len(photos))
    if (folder / ".complete").is_file():
        return folder, copies
    rng = np.random.default_rng(seed)
    if n < len(photos):  # a smaller run still spans every class (the fruit probe needs them)
        by_class: dict[str, list[Path]] = {}
        for photo in photos:
            by_class.setdefault(photo.parent.name, []).append(photo)
        turns = itertools.zip_longest(*by_class.values())
        photos = [photo for turn in turns for photo in turn if photo is not None][:n]
    for i in range(n):
        src = photos[i % len(photos)]
        (folder / src.parent.name).mkdir(parents=True, exist_ok=True)
        if i < len(photos):
            target = folder / src.parent.name / src.name
            target.write_bytes(src.read_bytes())
        else:
            target = folder / src.parent.name / f"jitter{i // len(photos)}_{src.stem}.jpg"
            target.write_bytes(jittered(src.read_bytes(), rng))
    (folder / ".complete").write_text(f"{n} photos, {copies} jittered copies, seed {seed}\n")
    return folder, copies


def bare_img_per_s(
    kind: str, weights: str, precision: str, blobs: list[bytes], batch_size: int
) -> tuple[float, str]:
    """The bare model on framed inputs, in this process with all cores: (img/s, what ran)."""
    from models.featurizer import FeaturizerSpec, build_featurizer
    from models.preprocess import open_for_model, to_model_input

    spec = FeaturizerSpec(kind, weights, DEFAULT_IMAGE_SIZE, precision).validated()
    featurizer = build_featurizer(spec, threads=os.cpu_count())
    size = spec.image_size
    inputs = np.stack([to_model_input(open_for_model(b, size), size) for b in blobs])
    batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
    featurizer.featurize(batches[0])  # warm-up: OpenVINO compiles, Keras traces
    start = time.perf_counter()
    for batch in batches:
        featurizer.featurize(batch)
    return len(inputs) / (time.perf_counter() - start), featurizer.precision


def run_job(folder: Path, out: Path, job_args: list[str], log_path: Path) -> float:
    """`python -m batch` on folder with the job's defaults plus job_args: wall seconds."""
    cmd = [sys.executable, "-m", "batch", "--input", str(folder), "--output", str(out), *job_args]
    print("job:", " ".join(cmd[1:]), f"(log: {log_path})", flush=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"the job failed (exit {proc.returncode}); see {log_path}")
    return wall


def main() -> None:
    from models.bundle import current_version, read_manifest

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="Fruits-360 folder or folder of class folders"
    )
    p.add_argument(
        "--photos", type=int, default=FULL_SIZE, help=f"photos the job runs on (default {FULL_SIZE:,})"
    )
    p.add_argument("--featurizer", default=DEFAULT_FEATURIZER)
    p.add_argument("--weights", default="imagenet", help="resnet50: random:0 (same arithmetic, no download)")
    p.add_argument("--work", type=Path, default=Path("build/bench-scale"), help="inputs and bundles")
    p.add_argument("--seed", type=int, default=0, help="seed of the jittered copies")
    p.add_argument("--bare-photos", type=int, default=512, help="photos the bare models are timed on")
    p.add_argument("--job-arg", action="append", default=[], help="extra flag for the job (repeatable)")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # a long run's lines as they come, also in a log

    photos = source_photos(args.data)
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    folder, copies = build_input(photos, args.photos, args.work, args.seed)
    made = time.perf_counter() - start
    print(f"{args.photos:,} photos in {folder} (built or reused in {made:.0f} s)")
    if copies:
        print(
            f"  NOTE: {args.data} holds {len(photos):,} photos; {copies:,} are seeded jittered copies "
            f"of them (shift <= 4 px, brightness x0.9-1.1, JPEG q85-95; seed {args.seed})"
        )
    print(
        f"featurizer {args.featurizer} ({args.weights} weights); the job's default, resnet50 with "
        "ImageNet weights, cannot be downloaded here. Everything else is the job's default."
    )
    out = args.work / f"bundles-{args.photos}"
    job_args = ["--featurizer", args.featurizer, "--weights", args.weights, *args.job_arg]
    wall = run_job(folder, out, job_args, args.work / f"job-{args.photos}.log")
    manifest = read_manifest(str(out), current_version(str(out)))
    ran = manifest.featurizer.precision

    blobs = [ph.read_bytes() for ph in photos[:: max(1, len(photos) // args.bare_photos)][: args.bare_photos]]
    bare, _ = bare_img_per_s(args.featurizer, args.weights, ran, blobs, DEFAULT_BATCH_SIZE)
    resnet, _ = bare_img_per_s("resnet50", "random:0", "fp32", blobs, DEFAULT_BATCH_SIZE)

    n = manifest.counts.featurized
    views = manifest.counts.augmented_rows / max(1, n)
    print(
        f"\njob: {n:,} photos (+{manifest.counts.augmented_rows:,} augmented views, {views:.1f} a photo), "
        f"{args.featurizer} in {ran}, {manifest.spark.master}, parallelism {manifest.spark.parallelism}"
    )
    for name, stage in manifest.stages.items():
        unit = "photos/s" if stage.images == n else "rows/s"  # rows: the photos and their views
        rate = f"{stage.images / stage.seconds:9.1f} {unit}" if stage.seconds and name != "list" else ""
        print(f"  stage {name:<10} {stage.seconds:8.1f} s {rate}")
    staged = sum(stage.seconds for stage in manifest.stages.values())
    print(f"  not in a stage (start-up, Spark session, probe, calibration, report) {wall - staged:8.1f} s")
    featurize = manifest.stages["featurize"]
    stage_rate = featurize.images / featurize.seconds
    floor = n / bare
    passes = n + manifest.counts.augmented_rows  # forward passes: each photo and each view
    print(f"bare {args.featurizer} {ran} (batch {DEFAULT_BATCH_SIZE}, all cores): {bare:7.1f} img/s")
    print(f"bare resnet50 fp32 (random:0 weights, same arithmetic): {resnet:7.1f} img/s")
    print(
        f"featurize stage / bare resnet50 fp32 = {stage_rate:.1f} / {resnet:.1f} photos/s = "
        f"{stage_rate / resnet:.2f}x (targets: >= 0.9, >= 2 with the real featurizer)"
    )
    print(
        f"featurize floor = {n:,} photos / {bare:.1f} = {floor:.0f} s "
        f"({passes:,} passes with the views: {passes / bare:.0f} s)"
    )
    print(f"featurize stage {featurize.seconds:.0f} s = {featurize.seconds / floor:.2f}x floor")
    print(
        f"wall (the job's process, start to exit) {wall:.0f} s = {wall / floor:.2f}x floor "
        f"(target < 1.15), {wall * bare / passes:.2f}x the passes' floor; overhead "
        f"{wall - floor:.0f} s ({wall - passes / bare:.0f} s beyond the passes)"
    )


if __name__ == "__main__":
    main()
