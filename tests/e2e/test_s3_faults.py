"""Faults on the real S3 endpoint: it stops answering mid-job -> bounded failure, pointer kept."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from models.bundle import current_version, list_versions, read_bundle
from models.storage import S3Storage
from tests.artifacts import republish
from tests.jobs import start_job
from tests.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, moto_server, upload_tree
from tests.support import TEST_IMAGE_SIZE, TEST_WEIGHTS, copy_photos

BUCKET = "fruits-faults"
ROOT = f"s3://{BUCKET}/bundles"


def wait_for_line(path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None, f"job ended before {text!r}:\n{path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout_s} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_s3_endpoint_stopping_mid_job_fails_it_cleanly(job_run, tmp_path, monkeypatch):
    photos = copy_photos(tmp_path / "photos", "Training", ["Banana", "Kiwi"], 6)
    # Its own endpoint: it is frozen below, and the session's must stay healthy.
    with moto_server(log_path=tmp_path / "moto.log") as s3:
        for key, value in s3.env.items():
            monkeypatch.setenv(key, value)
        storage = S3Storage()
        s3.client().create_bucket(Bucket=BUCKET)
        upload_tree(s3.client(), photos, BUCKET, "photos")
        served = republish(str(job_run[0]), ROOT, storage=storage)

        log = tmp_path / "job.log"
        job = start_job(
            [
                "--input",
                f"s3://{BUCKET}/photos",
                "--output",
                ROOT,
                "--weights",
                TEST_WEIGHTS,
                "--image-size",
                str(TEST_IMAGE_SIZE),
                "--master",
                "local[2]",
            ],
            s3.env,
            log,
        )
        try:
            # Listed on the driver; the executors have not fetched a photo yet. Freeze the
            # endpoint: connections are accepted by the kernel but never answered.
            wait_for_line(log, "found 12 photos", job, timeout_s=180)
            os.kill(s3.proc.pid, signal.SIGSTOP)
            started = time.monotonic()
            rc = job.wait(timeout=240)
            failed_after = time.monotonic() - started
        finally:
            if job.poll() is None:
                job.kill()
                job.wait(timeout=30)
            os.kill(s3.proc.pid, signal.SIGCONT)

        out = log.read_text(errors="replace")
        assert rc == 1, out[-3000:]
        final = [line for line in out.splitlines() if line.startswith("job failed")]
        assert len(final) == 1, out[-3000:]
        # One clear line: what failed, where, and that the published version was kept.
        assert (
            "current version unchanged: storage unavailable: S3 read failed for "
            f"s3://{BUCKET}/photos/" in final[0]
        )
        assert "timeout" in final[0].lower()
        assert "Traceback" not in final[0] and len(final[0]) < 600
        assert failed_after < 200  # bounded: FRUITS_S3_MAX_ATTEMPTS=2, 3 s timeouts
        assert ACCESS_KEY_ID not in out and SECRET_ACCESS_KEY not in out

        # The endpoint is back: the pointer and the version it names are untouched.
        assert current_version(ROOT, storage) == served
        assert read_bundle(ROOT, storage=storage).version == served
        assert list_versions(ROOT, storage) == [served]
