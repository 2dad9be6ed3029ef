"""`make demo`: run the job on the bundled sample, start the service, classify a sample photo."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import httpx

from service.launch import REPO_ROOT as REPO
from service.launch import running_service

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
        "--featurizer",
        "efficientnet-lite0",
        "--image-size",
        str(image_size),
        "--master",
        "local[2]",
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


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

    print("== 1/3  Spark job on the bundled sample (local Spark, EfficientNet-Lite0 ImageNet weights)")
    run_job(args.output, args.image_size)

    print("\n== 2/3  Service")
    log_path = args.output.parent / "demo-service.log"
    try:
        with running_service(
            {"ARTIFACTS_URI": str(args.output.resolve())},
            log_path=log_path,
            port=args.port,
            ready_timeout_s=180,
        ) as (url, proc):
            print(f"{url} is ready (its log: {log_path})")
            classify(url, args.photo)
            print(f"Swagger UI: {url}/docs   Model: {url}/v1/model")
            if args.serve == "yes" or (args.serve == "auto" and sys.stdin.isatty()):
                print("Serving until Ctrl-C ...")
                proc.wait()
    except KeyboardInterrupt:
        pass


def classify(url: str, photo: Path) -> None:
    print(f"\n== 3/3  POST {url}/v1/classify  file={photo.relative_to(REPO)}")
    with photo.open("rb") as fh:
        resp = httpx.post(
            f"{url}/v1/classify",
            params={"top_k": 3},
            files={"file": (photo.name, fh, "image/jpeg")},
            timeout=60,
        )
    print(json.dumps(resp.json(), indent=2, ensure_ascii=False))
    resp.raise_for_status()
    print(f"\nBest class: {resp.json()['label']} (true class: {photo.parent.name}).")


if __name__ == "__main__":
    main()
