"""`make demo`: run the job on the bundled sample, start the service, classify a sample photo."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import httpx

from service.launch import REPO_ROOT as REPO
from service.launch import running_service

SAMPLE = REPO / "examples" / "sample"

# Printed whatever the log settings say: TensorFlow 2.21's absl notices come before it reads
# TF_CPP_MIN_LOG_LEVEL (in the driver and each Spark worker), and the JVM's comes with the
# module that Spark's launcher always adds. The demo drops these lines and nothing else.
STARTUP_NOTICE = re.compile(
    rb"(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\."
    rb"|WARNING: Using incubator modules: jdk\.incubator\.vector)[^\n]*\n"
)


def forward_without_notices(src: BinaryIO, dst: BinaryIO) -> None:
    """Copy `src` to `dst` as it comes, less the STARTUP_NOTICE lines, also where one follows a
    progress bar (drawn without a newline). Of an unfinished line, only what may be a notice's
    start (from a W or I after the last terminal control code) waits for more."""
    held = b""
    while chunk := os.read(src.fileno(), 65536):
        data = held + chunk
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        plain = max(tail.rfind(b"\x1b"), tail.rfind(b"\r")) + 1
        start = re.search(rb"[WI]", tail[plain:])
        keep = plain + start.start() if start else len(tail)
        dst.write(STARTUP_NOTICE.sub(b"", data[:cut]) + tail[:keep])
        dst.flush()
        held = tail[keep:]
    dst.write(held)
    dst.flush()


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
    shown = [str(Path(a).relative_to(REPO)) if a.startswith(str(REPO)) else a for a in cmd]
    print("$", " ".join(shown), flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if sys.stderr.isatty():
        env["TTY_COMPATIBLE"] = "1"  # its stderr is our pipe, but the terminal is what shows it
    with subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE) as proc:
        try:
            forward_without_notices(proc.stderr, sys.stderr.buffer)
        except BaseException:  # Ctrl-C included: the job stops with the demo, as with run()
            proc.kill()
            raise
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


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
            print(f"Open {url}/ (the page for people), {url}/docs (Swagger UI), {url}/v1/model (the model)")
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
