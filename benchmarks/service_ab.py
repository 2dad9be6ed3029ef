"""Before/after of a service change: two checkouts' services up at once on one bundle, classify
requests at concurrency 1 interleaved between them (A, B, B, A, ...), so a busy shared machine
slows both alike. Prints each side's p50/p95 latency and answer size in bytes.

    git archive REV | tar -x -C /tmp/before
    python -m benchmarks.service_ab --before /tmp/before --bundle ARTIFACTS [--requests 300]

The bundle must be one both sides read: build it with the older checkout's job."""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from benchmarks.data import DEFAULT_DATA, require_fruits360
from service.launch import REPO_ROOT, running_service


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--before", type=Path, required=True, help="the other checkout (its service runs as 'before')"
    )
    p.add_argument("--bundle", required=True, help="ARTIFACTS_URI both services serve")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="fruits360 folder: Test photos are sent")
    p.add_argument("--requests", type=int, default=300, help="requests per side")
    p.add_argument("--photos", type=int, default=50, help="distinct Test photos, cycled")
    args = p.parse_args()
    test = require_fruits360(args.data, "Test") / "Test"
    blobs = [path.read_bytes() for path in sorted(test.rglob("*.jpg"))[::7][: args.photos]]
    env = {"ARTIFACTS_URI": args.bundle, "RELOAD_INTERVAL_S": "0"}
    with ExitStack() as stack:
        urls = {}
        for name, root in (("before", args.before.resolve()), ("after", REPO_ROOT)):
            url, _ = stack.enter_context(running_service({**env, "PYTHONPATH": str(root)}, cwd=root))
            urls[name] = url
        latencies: dict[str, list[float]] = {name: [] for name in urls}
        sizes: dict[str, list[int]] = {name: [] for name in urls}
        with httpx.Client(timeout=60) as client:

            def classify(url: str, photo: bytes) -> httpx.Response:
                resp = client.post(f"{url}/v1/classify", files={"file": ("photo.jpg", photo, "image/jpeg")})
                resp.raise_for_status()
                return resp

            for url in urls.values():  # warm-up: first calls trace graphs, fill caches
                for photo in blobs[:10]:
                    classify(url, photo)
            for i in range(args.requests):
                order = list(urls.items())
                for name, url in order if i % 2 == 0 else order[::-1]:
                    start = time.perf_counter()
                    resp = classify(url, blobs[i % len(blobs)])
                    latencies[name].append(time.perf_counter() - start)
                    sizes[name].append(len(resp.content))
    for name in urls:
        q = statistics.quantiles(latencies[name], n=100)
        p50 = statistics.median(latencies[name]) * 1000
        print(
            f"{name:>6}: {len(latencies[name])} requests, p50 {p50:.1f} ms, "
            f"p95 {q[94] * 1000:.1f} ms; answer bytes median {statistics.median(sizes[name]):.0f} "
            f"(min {min(sizes[name])}, max {max(sizes[name])})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
