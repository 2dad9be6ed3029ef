"""`make demo`: run the job on the bundled sample, start the service, classify a sample photo."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "sample"


def run_job(output: Path, image_size: int) -> None:
    cmd = [
        sys.executable,
        "-m",
        "batch",
        "--input",
        str(SAMPLE / "Training"),
        "--output",
        str(output),
        "--weights",
        "random:0",
        "--image-size",
        str(image_size),
        "--master",
        "local[2]",
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the service exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit(f"the service was not ready after {timeout_s:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output", type=Path, default=REPO / "build" / "demo-artifacts")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--photo", type=Path, default=sorted((SAMPLE / "Test" / "Kiwi").glob("*.jpg"))[0])
    p.add_argument(
        "--serve",
        choices=["auto", "yes", "no"],
        default="auto",
        help="keep serving after the demo (auto: when run from a terminal)",
    )
    args = p.parse_args()

    print("== 1/3  Spark job on the bundled sample (local Spark, RANDOM weights: no internet)")
    run_job(args.output, args.image_size)

    print("\n== 2/3  Service")
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "ARTIFACTS_URI": str(args.output)}
    proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(args.port)], cwd=REPO, env=env)
    try:
        wait_ready(url, proc)
        print(f"\n== 3/3  POST {url}/v1/classify  file={args.photo.relative_to(REPO)}")
        with args.photo.open("rb") as fh:
            resp = httpx.post(
                f"{url}/v1/classify",
                params={"top_k": 3},
                files={"file": (args.photo.name, fh, "image/jpeg")},
                timeout=60,
            )
        print(json.dumps(resp.json(), indent=2, ensure_ascii=False))
        resp.raise_for_status()
        print(f"\nBest class: {resp.json()['label']} (true class: {args.photo.parent.name}).")
        print(f"Swagger UI: {url}/docs   Model: {url}/v1/model")
        serve = args.serve == "yes" or (args.serve == "auto" and sys.stdin.isatty())
        if serve:
            print("Serving until Ctrl-C ...")
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
