"""Runs the batch job: in the tests' Spark session, or in its own process (`python -m batch`),
as an operator or scheduler does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT

JOB_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "SPARK_DRIVER_MEMORY": "1g",  # a few dozen 64 px photos: keep the shared CI box free
}


def run_on_training(spark, dataset: Path, root: Path, spec, **options):
    """The real job in this process's Spark session, on dataset/Training, publishing under root;
    `options` are more JobConfig fields. Returns the JobResult."""
    from batch.config import JobConfig
    from batch.job import run_job

    config = JobConfig(input_uri=str(dataset / "Training"), output_uri=str(root), spec=spec, **options)
    return run_job(config, spark)


def start_job(
    args: list[str], env: dict[str, str], log_path: Path, *, own_group: bool = False
) -> subprocess.Popen:
    """Start `python -m batch ARGS`; stdout and stderr go to log_path. `own_group`: in a new
    process group (its id = the job's pid) holding the job and its Spark JVM, so that one
    killpg ends them all, as a scheduler ending a job's container does."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "batch", *args],
            cwd=REPO_ROOT,
            env={**os.environ, **JOB_ENV, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )


def run_job_cli(
    args: list[str], env: dict[str, str], log_path: Path, timeout_s: float = 420
) -> tuple[int, str]:
    """Run the job to the end (bounded); returns its exit code and its whole output."""
    proc = start_job(args, env, log_path)
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise
    return rc, log_path.read_text(errors="replace")
