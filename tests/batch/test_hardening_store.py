"""Concurrent jobs on one bundle store: a publish built on an older snapshot is refused, and
retention spares what running jobs need while it removes a killed job's leftovers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models import storage as storage_module
from models.bundle import (
    LEASE_STALE,
    MANIFEST,
    BundleError,
    LeaseRenewer,
    PointerMoved,
    current_version,
    list_versions,
    new_version_id,
    pointer_state,
    prune_versions,
    publish,
    read_bundle,
    running_jobs,
    take_lease,
    version_uri,
    write_version,
)
from models.storage import LocalStorage, _holder_dead, join, storage_for
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


def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_of_two_waiters_that_judge_one_dead_lock_only_one_holds_it(tmp_path, monkeypatch):
    # Both waiters judge the lock dead before either acts; A takes it, then B acts on its
    # outdated judgement. The order is forced by a barrier and events (bounded waits), no sleeps.
    path = tmp_path / "CURRENT"
    (tmp_path / ".CURRENT.lock").write_text(f"{socket.gethostname()} {dead_pid()}\n")
    both_judged = threading.Barrier(2, timeout=10)
    a_holds, b_kept_out = threading.Event(), threading.Event()
    looks = {"A": 0, "B": 0}
    holders: list[str] = []
    most_at_once: list[int] = []
    real_holder_dead = storage_module._holder_dead

    def judged(lock):
        who = threading.current_thread().name
        looks[who] += 1
        verdict = real_holder_dead(lock)
        if looks[who] == 1:
            both_judged.wait()
            if who == "B":
                a_holds.wait(10)
        elif who == "B" and looks[who] >= 3:  # B is back in its wait loop: kept out
            b_kept_out.set()
        return verdict

    monkeypatch.setattr(storage_module, "_holder_dead", judged)

    def waiter() -> None:
        who = threading.current_thread().name
        with LocalStorage._locked(path):
            holders.append(who)
            most_at_once.append(len(holders))
            if who == "A":
                a_holds.set()
                b_kept_out.wait(10)
            else:
                b_kept_out.set()
            holders.remove(who)

    threads = [threading.Thread(target=waiter, name=name) for name in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert most_at_once == [1, 1]  # both got the lock, one after the other, never together
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no lock, no claimed copy left


def test_a_pointer_temp_file_left_by_a_killed_rename_is_removed_by_the_next_publish(tmp_path):
    root = str(tmp_path)
    v1 = written(root)
    publish(root, v1)
    # A publish killed between writing the new pointer and its rename leaves write_bytes's temp file.
    fd, leftover = tempfile.mkstemp(dir=tmp_path, prefix=".CURRENT.")
    os.write(fd, b"20260101T000000Z-abcdef\n")
    os.close(fd)
    v2 = written(root)
    publish(root, v2, expected=pointer_state(root))
    assert current_version(root) == v2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


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


class KilledInFolderDelete(LocalStorage):
    """A recursive delete killed partway: one array file gone, the rest of the folder left."""

    def delete_prefix(self, uri: str) -> None:
        if Path(uri).is_dir():
            (Path(uri) / "embeddings.npy").unlink()
            raise OSError("killed")
        super().delete_prefix(uri)


def test_a_retention_killed_mid_deletion_leaves_no_version_that_looks_whole(tmp_path):
    root = str(tmp_path)
    now = datetime.now(UTC)
    old, new = written(root, now - timedelta(hours=3)), written(root, now - timedelta(hours=2))
    publish(root, new)
    prune_versions(root, keep_versions=1, keep=new, storage=KilledInFolderDelete(), now=now)
    # The manifest went first: what is left is an incomplete folder, not a listed version.
    assert (tmp_path / "versions" / old).is_dir()
    assert list_versions(root) == [new]
    with pytest.raises(BundleError):
        read_bundle(root, old)
    # The next retention removes it (an incomplete folder older than ORPHAN_GRACE).
    prune_versions(root, keep_versions=1, keep=new, now=now)
    assert not (tmp_path / "versions" / old).exists()


def test_a_killed_jobs_lease_stops_protecting_within_minutes_while_renewals_keep_it(tmp_path):
    root = str(tmp_path)
    now = datetime.now(UTC)
    v1 = written(root, now - timedelta(hours=3))
    job = new_version_id(now - timedelta(hours=2))  # the running job, holding the lease
    v3, v4 = written(root, now - timedelta(hours=1)), written(root, now)
    publish(root, v4)
    lease = LeaseRenewer(root, job, storage_for(root))
    assert lease.interval == LEASE_STALE / 3
    lease.renew(now)
    renewed = now + lease.interval
    lease.renew(renewed)  # the renewer's step, called directly: no thread, no waiting
    # Renewed, the lease outlives its first TTL: v3 (newer than the job) is kept.
    prune_versions(root, keep_versions=1, keep=v4, now=renewed + LEASE_STALE - timedelta(seconds=1))
    assert running_jobs(root, now=now + LEASE_STALE + timedelta(seconds=1)) == [job]
    assert list_versions(root) == [v3, v4] and v1 not in list_versions(root)
    # Then the job is killed: no renewal comes, and one TTL later v3 is no longer protected.
    prune_versions(root, keep_versions=1, keep=v4, now=renewed + LEASE_STALE + timedelta(seconds=1))
    assert list_versions(root) == [v4]
    assert timedelta(minutes=10) >= LEASE_STALE  # minutes after a kill, not a day


def test_the_lease_renewer_takes_the_lease_and_stops_when_told(tmp_path):
    root = str(tmp_path)
    job = new_version_id()
    lease = LeaseRenewer(root, job, storage_for(root), interval=timedelta(hours=1))
    lease.start()
    assert running_jobs(root) == [job]
    lease.stop()  # wakes the thread from its wait and joins it: no sleep in this test
    assert not lease.renewing


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
