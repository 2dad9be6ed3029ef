"""The job killed with SIGKILL at each of its pause points: CURRENT still loads, the next run publishes.

Each kill is deterministic, not timed: the job runs in its own process with
FRUITS_FAULT_PAUSE_AT naming a point of models.faults.POINTS; on reaching it, the job (or the
executor's Python worker, for the points inside a Spark stage) announces itself in a folder
and waits. The test sees the announcement and kills the job's whole process group (driver and
Spark JVM) with SIGKILL from outside, then the paused process itself, as an operator would.
The next run happens in this process's Spark session, on the same bundle store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from models.augment import AugmentSpec
from models.bundle import BundleError, current_version, read_bundle, version_uri
from models.faults import POINTS
from models.featurizer import FeaturizerSpec
from tests.jobs import start_job
from tests.support import copy_photos

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SPEC = FeaturizerSpec.parse("pixels:8", "none", None)
PHOTOS_PER_CLASS = 4  # x 3 classes, 4 photos a partition: the featurize stage has 3 tasks
PAUSE_LIMIT_S = 240  # a job that never reaches its point fails the test well before the timeout
# Points reached before the version's manifest is written: that version must not be readable.
BEFORE_MANIFEST = POINTS[: POINTS.index("wrote:manifest.json")]
# The arrays are written by one loop (models.bundle): its first array and the catalog after the
# last bound it, so the middle array's point is not killed at as well (each kill is a job's run,
# ~30 s of the suite); tests/models/test_bundle.py checks that a version passes them in order.
KILLED_AT = [p for p in POINTS if p != "wrote:embeddings.npy"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fault-photos")
    return copy_photos(folder, "Training", ["Banana", "Kiwi", "Lemon"], PHOTOS_PER_CLASS)


def job_options(photos: Path, root: Path) -> dict:
    """The same job whether run by the CLI or in process: tiny, no augmented views, keep 1."""
    return {"input_uri": str(photos), "output_uri": str(root), "images_per_partition": 4}


@pytest.fixture(scope="module")
def pristine(spark, photos, tmp_path_factory) -> Path:
    """A bundle store holding one published version: copied before each kill."""
    root = tmp_path_factory.mktemp("fault-store") / "bundles"
    run_in_process(spark, photos, root)
    return root


def run_in_process(spark, photos: Path, root: Path):
    from batch.config import JobConfig
    from batch.job import run_job

    config = JobConfig(**job_options(photos, root), spec=SPEC, augment=AugmentSpec(views=0), keep_versions=1)
    return run_job(config, spark)


def cli_args(photos: Path, root: Path) -> list[str]:
    options = job_options(photos, root)
    return [
        "--input", options["input_uri"], "--output", options["output_uri"],
        "--featurizer", f"pixels:{SPEC.image_size}", "--weights", "none", "--augment", "0",
        "--images-per-partition", str(options["images_per_partition"]),
        "--keep-versions", "1", "--master", "local[1]",
    ]  # fmt: skip


def announced(folder: Path) -> list[int]:
    """Pids of the processes paused at their point (whole files only: written by rename)."""
    if not folder.is_dir():
        return []
    return sorted(int(p.name.rsplit(".", 1)[1]) for p in folder.iterdir() if not p.name.startswith("."))


def kill_at_pause(job: subprocess.Popen, pauses: Path, log: Path) -> list[int]:
    """Wait until the job announces its pause, then SIGKILL its process group and the paused
    process (an executor's Python worker lives in the Spark daemon's own group). Returns the
    pids that paused; the job is dead when this returns, whatever happened."""
    paused: list[int] = []
    try:
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while not (paused := announced(pauses)):
            if job.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"the job ended ({job.returncode}) before its pause:\n{tail}")
            assert time.monotonic() < deadline, "the job never reached its pause point"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)
        for pid in announced(pauses):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        job.wait(timeout=30)
    return paused


def assert_serves(root: Path, version: str) -> None:
    """CURRENT names `version`, and both the bundle reader and the service's loader accept it."""
    from service.settings import Settings
    from service.state import load_classifier

    assert current_version(str(root)) == version
    assert read_bundle(str(root)).version == version
    classifier = load_classifier(Settings(artifacts_uri=str(root)))
    assert classifier.bundle.version == version


@pytest.mark.parametrize("point", KILLED_AT)
def test_a_job_killed_at_a_point_leaves_current_loadable_and_the_next_run_publishes(
    point, spark, photos, pristine, tmp_path
):
    root = tmp_path / "bundles"
    shutil.copytree(pristine, root)
    base = current_version(str(root))
    pauses, log = tmp_path / "pauses", tmp_path / "job.log"
    env = {"FRUITS_FAULT_PAUSE_AT": point, "FRUITS_FAULT_PAUSE_DIR": str(pauses)}
    job = start_job(cli_args(photos, root), env, log, own_group=True)
    paused = kill_at_pause(job, pauses, log)

    assert job.returncode == -signal.SIGKILL
    assert len(paused) == 1  # local[1]: one task at a time, so one process reached the point
    for pid in paused:  # gone, not left sleeping on the machine
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), f"paused process {pid} survived"
    # Killed, the job cleaned nothing: its lease names the version it was writing.
    (killed,) = [p.stem for p in (root / "leases").glob("*.json")]
    assert killed != base

    published = point == "retention"  # the only point after the pointer moved
    assert_serves(root, killed if published else base)
    if point in BEFORE_MANIFEST:
        # Half a version: nothing, not even a reader given its id, can load it.
        with pytest.raises(BundleError):
            read_bundle(str(root), killed)
    elif not published:
        # Written in full but not published: complete, and not CURRENT.
        assert read_bundle(str(root), killed).version == killed
    if point == "retention":
        assert not Path(version_uri(str(root), base)).exists()  # the kill came after its removal

    result = run_in_process(spark, photos, root)
    assert result.version not in (base, killed)
    assert_serves(root, result.version)
