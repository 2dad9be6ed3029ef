"""Concurrent jobs on one bundle store: a publish built on an older snapshot is refused, and
retention spares what running jobs need while it removes a killed job's leftovers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from models.bundle import (
    MANIFEST,
    PointerMoved,
    current_version,
    list_versions,
    new_version_id,
    pointer_state,
    prune_versions,
    publish,
    take_lease,
    version_uri,
    write_version,
)
from models.storage import _holder_dead, join, storage_for
from tests.jobs import start_job
from tests.models.test_bundle import make_bundle
from tests.support import TEST_IMAGE_SIZE, TEST_WEIGHTS


def written(root: str, when: datetime | None = None) -> str:
    bundle = make_bundle(new_version_id(when))
    write_version(root, bundle)
    return bundle.version


def test_publish_is_refused_when_current_moved_since_the_job_started(tmp_path):
    root = str(tmp_path)
    v1 = written(root)
    publish(root, v1)
    base = pointer_state(root)  # job A starts on v1
    v2 = written(root)
    publish(root, v2, expected=pointer_state(root))  # job B, started later, publishes first
    mine = written(root)
    with pytest.raises(PointerMoved, match=f"from {v1} to {v2}"):
        publish(root, mine, expected=base)
    assert current_version(root) == v2
    # From no pointer at all: the first publisher wins, a second one on the same (empty) base loses.
    empty = str(tmp_path / "fresh")
    first, second = written(empty), written(empty)
    base = pointer_state(empty)
    assert base.version is None
    publish(empty, first, expected=base)
    with pytest.raises(PointerMoved):
        publish(empty, second, expected=base)
    assert current_version(empty) == first


def test_of_concurrent_publishers_on_one_base_exactly_one_wins(tmp_path):
    root = str(tmp_path)
    v0 = written(root)
    publish(root, v0)
    base = pointer_state(root)
    candidates = [written(root) for _ in range(8)]
    start = threading.Barrier(len(candidates))
    outcomes: dict[str, str] = {}

    def run(v: str) -> None:
        start.wait(timeout=30)
        try:
            publish(root, v, expected=base)
            outcomes[v] = "published"
        except PointerMoved:
            outcomes[v] = "refused"

    threads = [threading.Thread(target=run, args=(v,)) for v in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [v for v, o in outcomes.items() if o == "published"]
    assert len(outcomes) == 8 and len(winners) == 1, outcomes
    assert current_version(root) == winners[0]


def test_a_publish_lock_left_by_a_killed_writer_is_taken_over_at_once(tmp_path):
    root = str(tmp_path)
    v1 = written(root)
    publish(root, v1)
    base = pointer_state(root)
    # A writer killed while it held the lock: a pid of this host that no longer runs, and a
    # lock file seconds old (LOCK_STALE_S would keep it for 30 s, past the 10 s a publish waits).
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = tmp_path / ".CURRENT.lock"
    lock.write_text(f"{socket.gethostname()} {gone.pid}\n")
    v2 = written(root)
    publish(root, v2, expected=base)
    assert current_version(root) == v2
    assert not lock.exists()
    # Only a dead holder of this host loses its lock: a live one, or one of another host, keeps it.
    lock.write_text(f"{socket.gethostname()} {os.getppid()}\n")
    assert not _holder_dead(lock)
    lock.write_text(f"another-host {gone.pid}\n")
    assert not _holder_dead(lock)


def test_retention_spares_running_jobs_and_removes_a_killed_jobs_folder(tmp_path):
    root = str(tmp_path)
    now = datetime.now(UTC)
    hours = [now - timedelta(hours=h) for h in (10, 9, 8, 6, 5)]
    v1, v2, v3 = (written(root, t) for t in hours[:3])
    # A job started 7 hours ago still runs (lease live); v4 and v5 came after it started.
    running = new_version_id(now - timedelta(hours=7))
    take_lease(root, running)
    storage_for(root).write_bytes(join(version_uri(root, running), "features", "part-0.parquet"), b"x")
    v4, v5 = (written(root, t) for t in hours[3:])
    # A job killed a day ago left a folder without a manifest, and no live lease.
    killed = new_version_id(now - timedelta(hours=30))
    storage_for(root).write_bytes(join(version_uri(root, killed), "features", "part-0.parquet"), b"x")
    # A folder without a manifest from minutes ago and no lease: within the grace, kept.
    recent = new_version_id(now - timedelta(minutes=5))
    storage_for(root).write_bytes(join(version_uri(root, recent), "classes.npy"), b"x")
    publish(root, v5)

    prune_versions(root, keep_versions=1, keep=v5, now=now)

    # v1..v3 are older than the running job and beyond keep_versions: removed. v4 is younger
    # than the running job: kept although keep_versions says 1.
    assert list_versions(root) == [v4, v5]
    assert storage_for(root).exists(join(version_uri(root, running), "features", "part-0.parquet"))
    assert not storage_for(root).exists(version_uri(root, killed))
    assert storage_for(root).exists(join(version_uri(root, recent), "classes.npy"))
    assert not any(storage_for(root).exists(join(version_uri(root, v), MANIFEST)) for v in (v1, v2, v3))

    # Once the running job's lease is stale (a day later), nothing protects v4 any more.
    prune_versions(root, keep_versions=1, keep=v5, now=now + timedelta(hours=25))
    assert list_versions(root) == [v5]


@pytest.mark.slow
def test_a_job_whose_base_moved_does_not_publish(job_run, dataset, tmp_path):
    from tests.artifacts import republish

    src, _ = job_run
    root = tmp_path / "bundles"
    base = republish(str(src), str(root))
    log = tmp_path / "job.log"
    args = ["--input", str(dataset / "Training"), "--output", str(root), "--weights", TEST_WEIGHTS]
    args += ["--image-size", str(TEST_IMAGE_SIZE), "--master", "local[1]"]
    job = start_job(args, {}, log)
    try:
        deadline = time.monotonic() + 300
        while "found" not in log.read_text(errors="replace"):
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the job never listed its photos"
            time.sleep(0.1)
        other = republish(str(src), str(root))  # another job publishes while this one runs
        assert job.wait(timeout=420) == 1
    finally:
        if job.poll() is None:
            job.kill()
    text = log.read_text(errors="replace")
    assert f"CURRENT moved from {base} to {other}" in text
    assert current_version(str(root)) == other
    assert sorted(list_versions(str(root))) == sorted([base, other])  # its own version removed


def test_a_catalog_override_of_the_wrong_type_fails_the_job_before_any_work(spark, dataset, tmp_path):
    from batch.config import JobConfig
    from batch.job import run_job
    from models.featurizer import FeaturizerSpec

    overrides = tmp_path / "catalog.json"
    overrides.write_text('{"Kiwi": {"fact": 5}}')
    root = tmp_path / "out"
    config = JobConfig(
        input_uri=str(dataset / "Training"),
        output_uri=str(root),
        spec=FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE),
        catalog_uri=str(overrides),
    )
    with pytest.raises(ValueError, match="catalog entry 'Kiwi': fact"):
        run_job(config, spark)
    assert not (root / "versions").exists()  # nothing featurized, nothing written
