"""Evaluation and the run report on S3 (moto server on 127.0.0.1): same numbers, same files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from PIL import Image

from evaluation import evaluate
from tests.s3 import read_text, upload_tree
from tests.support import REPO_ROOT

BUCKET = "eval-report"
PNGS = ("explained_variance.png", "images_per_class.png", "projection_2d.png", "stages.png")


def _run(code_or_module: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *code_or_module],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
    )


def test_evaluate_and_report_through_s3(s3, job_run, dataset):
    root, result = job_run
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    upload_tree(client, root, BUCKET, "artifacts")
    upload_tree(client, dataset / "Test", BUCKET, "fruits/Test")

    proc = _run(
        [
            "-m",
            "evaluation",
            "--bundle",
            f"s3://{BUCKET}/artifacts",
            "--data",
            f"s3://{BUCKET}/fruits/Test",
            "--json",
            f"s3://{BUCKET}/eval.json",
        ],
        s3.env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = json.loads(read_text(client, f"s3://{BUCKET}/eval.json"))
    local = evaluate(str(root), str(dataset / "Test"), top_k=5)
    assert remote["photos"] == local.photos == 36
    assert all(p["uri"].startswith(f"s3://{BUCKET}/fruits/Test/") for p in remote["predictions"])
    for key in ("top1_accuracy", "top_k_accuracy", "unknown_rate", "confusion"):
        assert remote[key] == getattr(local, key), key

    # The job writes its report through the same storage layer: write one onto S3.
    vdir = f"s3://{BUCKET}/artifacts/versions/{result.version}"
    vkey = f"artifacts/versions/{result.version}"
    client.delete_object(Bucket=BUCKET, Key=f"{vkey}/report/index.html")
    proc = _run(
        [
            "-c",
            "import sys; from batch.report import write_report; "
            "from models.bundle import read_bundle; "
            "write_report(sys.argv[1], read_bundle(sys.argv[1]))",
            f"s3://{BUCKET}/artifacts",
        ],
        s3.env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = read_text(client, f"{vdir}/report/index.html")
    assert page is not None and all(f'src="{name}"' in page for name in PNGS)
    for name in PNGS:
        body = client.get_object(Bucket=BUCKET, Key=f"{vkey}/report/{name}")["Body"].read()
        with Image.open(io.BytesIO(body)) as img:
            assert img.format == "PNG"
