"""`make bench-refresh`: a full job run over N photos, then an --incremental refresh with 5% new ones."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.data import DEFAULT_DATA, require_fruits360
from benchmarks.featurize import pick_photos

TARGET_RATIO = 0.20  # the bar: a 5% refresh costs at most a fifth of a full run


def add_photos(photos: list[Path], dest: Path) -> None:
    for p in photos:
        (dest / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest / p.parent.name / p.name)


def timed_run(config) -> tuple[float, dict]:
    """One job run in a fresh Spark session (so both runs pay start-up and model builds)."""
    from batch.job import run_job
    from batch.session import spark_session

    start = time.perf_counter()
    spark = spark_session(config.master)
    try:
        result = run_job(config, spark)
    finally:
        spark.stop()
    return time.perf_counter() - start, result.manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.refresh", description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Fruits-360 root (has Training/)")
    p.add_argument(
        "-n", type=int, default=5700, help="photos in the full run (5700 + 5% fits the 6000 shared photos)"
    )
    p.add_argument("--new-share", type=float, default=0.05, help="share of new photos")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument(
        "--weights",
        default="random:0",
        help="random:SEED runs offline at ImageNet speed; or imagenet / a weights file",
    )
    p.add_argument("--master", default="local[*]")
    args = p.parse_args(argv)
    require_fruits360(args.data, "Training")

    from batch.config import JobConfig
    from models.featurizer import FeaturizerSpec

    n_new = max(1, round(args.n * args.new_share))
    chosen = pick_photos(args.data, args.n + n_new)
    # The new photos are spread over the classes too: every (1/share)-th pick is held back.
    step = max(1, len(chosen) // n_new)
    new = chosen[step - 1 :: step][:n_new]
    held = set(new)
    initial = [q for q in chosen if q not in held]
    spec = FeaturizerSpec("resnet50", args.weights, args.image_size)

    with tempfile.TemporaryDirectory(prefix="bench-refresh-") as tmp:
        photos, root = Path(tmp) / "Training", Path(tmp) / "bundles"
        add_photos(initial, photos)

        def config(incremental: bool) -> JobConfig:
            return JobConfig(
                input_uri=str(photos),
                output_uri=str(root),
                spec=spec,
                master=args.master,
                incremental=incremental,
            )

        full_s, full = timed_run(config(incremental=False))
        add_photos(new, photos)
        refresh_s, refresh = timed_run(config(incremental=True))

    r = refresh.refresh
    print(
        f"\nrefresh benchmark: resnet50 at {args.image_size}px, weights {args.weights}, master {args.master}"
    )
    print(f"  full run     {len(initial):6d} photos  {full_s:8.1f} s")
    print(
        f"  refresh      {len(initial) + len(new):6d} photos  {refresh_s:8.1f} s   "
        f"(reused {r.reused}, featurized {r.featurized}, dropped {r.dropped})"
    )
    ratio = refresh_s / full_s
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"  ratio refresh/full = {ratio:.3f}  ({verdict} the <= {TARGET_RATIO:.2f} target)")
    print("  stage seconds        full   refresh")
    for name, stage in full.stages.items():
        again = refresh.stages.get(name)
        print(f"    {name:<12} {stage.seconds:9.1f} {again.seconds if again else float('nan'):9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
