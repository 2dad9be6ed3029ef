"""A real Spark standalone cluster on 127.0.0.1: spark-submit batch/main.py, same output as local."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyspark
import pytest

from batch.config import DEFAULT_AUGMENT_VIEWS, JobConfig
from batch.job import run_job
from models.bundle import read_bundle
from models.featurizer import FeaturizerSpec, build_featurizer
from tests.support import (
    REPO_ROOT,
    TEST_IMAGE_SIZE,
    TEST_WEIGHTS,
    copy_photos,
    free_port,
    stop_process,
)

SPARK_HOME = Path(pyspark.__file__).parent  # pyspark from PyPI is a complete Spark install
LABELS = ["Banana", "Cherry 1", "Kiwi"]


def _spark_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOG_DIR": str(tmp),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"exited before {text!r}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout_s} s in {log}"
        time.sleep(0.3)


@contextlib.contextmanager
def standalone_cluster(tmp: Path) -> Iterator[str]:
    """One master and one worker (2 cores, 3 GB) from the pyspark install; yields the master URL."""
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port = free_port()
    env = _spark_env(tmp)
    procs = []
    try:
        with open(tmp / "master.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        spark_class,
                        "org.apache.spark.deploy.master.Master",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--webui-port",
                        str(free_port()),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_for(tmp / "master.log", "I have been elected leader", procs[0])
        master = f"spark://127.0.0.1:{port}"
        with open(tmp / "worker.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        spark_class,
                        "org.apache.spark.deploy.worker.Worker",
                        "--host",
                        "127.0.0.1",
                        "--cores",
                        "2",
                        "--memory",
                        "3g",
                        "--webui-port",
                        str(free_port()),
                        "--work-dir",
                        str(tmp / "work"),
                        master,
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_for(tmp / "worker.log", "Successfully registered with master", procs[1])
        yield master
    finally:
        for proc in reversed(procs):
            stop_process(proc, timeout_s=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """One standalone cluster for this module's jobs: (master URL, the worker's work folder)."""
    tmp = tmp_path_factory.mktemp("standalone")
    with standalone_cluster(tmp) as master:
        yield master, tmp / "work"


def submit_job(tmp: Path, master: str, cwd: Path, *args: str) -> None:
    """spark-submit of the job to the standalone master (one core and 1 GB per executor), run
    from `cwd`; fails the test with the end of its log unless it succeeds."""
    command = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        *["--master", master, "--executor-memory", "1g", "--conf", "spark.task.cpus=1"],
        str(REPO_ROOT / "batch" / "main.py"),
        *args,
    ]
    with open(tmp / "submit.log", "wb") as log:
        done = subprocess.run(
            command, env=_spark_env(tmp), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=420
        )
    out = (tmp / "submit.log").read_text(errors="replace")
    assert done.returncode == 0, out[-4000:]


@pytest.mark.cluster
@pytest.mark.spark
@pytest.mark.slow
def test_spark_submit_on_a_standalone_cluster_matches_local(spark, cluster, tmp_path):
    photos = copy_photos(tmp_path / "photos", "Training", LABELS, 4)
    args = [
        "--input",
        str(photos),
        "--weights",
        TEST_WEIGHTS,
        "--image-size",
        str(TEST_IMAGE_SIZE),
        "--images-per-partition",
        "4",
        "--precision",
        "fp32",  # the local run's spec below; the CLI's default follows the CPU
    ]
    cluster_root = tmp_path / "cluster-bundles"
    master, _ = cluster
    submit_job(tmp_path, master, tmp_path, *args, "--output", str(cluster_root))
    on_cluster = read_bundle(str(cluster_root))
    assert on_cluster.manifest.spark.master == master

    local_root = tmp_path / "local-bundles"
    run_job(
        JobConfig(
            input_uri=str(photos),
            output_uri=str(local_root),
            spec=FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE),
            images_per_partition=4,
        ),
        spark,
    )
    local = read_bundle(str(local_root))
    assert local.manifest.spark.master.startswith("local")

    assert (
        on_cluster.sources.tolist()
        == local.sources.tolist()
        == sorted(str(p) for p in photos.rglob("*.jpg") for _ in range(1 + DEFAULT_AUGMENT_VIEWS))
    )
    assert on_cluster.embeddings.shape == local.embeddings.shape
    np.testing.assert_allclose(on_cluster.embeddings, local.embeddings, atol=1e-4, rtol=0)
    np.testing.assert_allclose(on_cluster.pca_components, local.pca_components, atol=1e-4)
    assert on_cluster.manifest.weights.sha256 == local.manifest.weights.sha256


@pytest.mark.cluster
@pytest.mark.slow
def test_executors_need_no_access_to_the_weights_file(cluster, tmp_path):
    """The weights file exists only for the driver: a path relative to the driver's working
    folder, which an executor (running in the worker's own work folder) cannot open. The driver
    resolves it once and Spark ships its copy; the old code, where every executor opened the
    path itself, failed here."""
    reference = build_featurizer(FeaturizerSpec("resnet50", "random:0", TEST_IMAGE_SIZE))
    driver_dir = tmp_path / "driver"
    weights = Path("weights-store") / "resnet.weights.h5"
    (driver_dir / weights.parent).mkdir(parents=True)
    reference._model.save_weights(driver_dir / weights)
    photos = copy_photos(tmp_path / "photos", "Training", LABELS, 2)
    root = tmp_path / "bundles"
    master, work = cluster
    earlier = set(work.glob("app-*"))  # the module's other application ran on this worker too
    submit_job(
        tmp_path,
        master,
        driver_dir,
        *["--input", str(photos), "--output", str(root), "--weights", str(weights)],
        *["--image-size", str(TEST_IMAGE_SIZE), "--images-per-partition", "3", "--augment", "0"],
    )
    apps = set(work.glob("app-*")) - earlier
    executor_dirs = [d for app in apps for d in app.iterdir() if d.is_dir()]
    assert executor_dirs and not any((d / weights).exists() for d in executor_dirs)
    manifest = read_bundle(str(root)).manifest
    assert manifest.spark.master == master
    assert manifest.weights.spec == str(weights) and not manifest.weights.random
    assert manifest.weights.sha256 == reference.weights_sha256
