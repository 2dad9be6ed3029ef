"""Hot reload under contention and store faults: one check at a time whoever asks, a store
outage retried at the next check rather than remembered as a refusal, and 503 (not 500) from
the admin endpoint while the store cannot be read."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from models.bundle import publish, version_uri, write_version
from models.preprocess import PREPROCESSING_VERSION
from models.storage import LocalStorage, S3Storage, Storage, join
from service.reload import Reloader
from service.settings import Settings
from service.state import ModelHolder
from tests.models.test_bundle import make_bundle
from tests.s3 import moto_server
from tests.support import running_service

TOKEN = "hardening-reload-token-5e6f7a8b9c0d1e2f3a4b"


def pixels_version(root: str, storage: Storage | None = None) -> str:
    """A tiny bundle of the pixels featurizer (no Keras model to build), written, not published."""
    bundle = make_bundle(d=12)  # pixels at 2 px: 2 x 2 x 3 features
    bundle.manifest.weights.sha256 = hashlib.sha256(b"pixels").hexdigest()
    bundle.manifest.preprocessing.version = PREPROCESSING_VERSION
    write_version(root, bundle, storage)
    return bundle.version


def wait_until(condition, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s} s"
        time.sleep(0.01)


class GatedStore:
    """The real local storage; each manifest read waits until `gate` opens, and is counted."""

    def __init__(self):
        self._inner = LocalStorage()
        self.gate = threading.Event()
        self.manifest_reads = 0

    def read_bytes(self, uri: str) -> bytes:
        if uri.endswith("/manifest.json"):
            self.manifest_reads += 1
            assert self.gate.wait(60), "the test never opened the gate"
        return self._inner.read_bytes(uri)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_concurrent_reload_checks_share_one_load(tmp_path, caplog):
    root = str(tmp_path)
    version = pixels_version(root)
    publish(root, version)
    # A damaged array: refused, and the admin endpoint's checks retry a refused version.
    emb = join(version_uri(root, version), "embeddings.npy")
    LocalStorage().write_bytes(emb, LocalStorage().read_bytes(emb)[:-1] + b"\x00")
    store = GatedStore()
    reloader = Reloader(ModelHolder(), Settings(artifacts_uri=root), threading.Lock(), storage=store)
    caplog.set_level(logging.ERROR, logger="service.reload")
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(reloader.reload, retry_refused=True)
        wait_until(lambda: store.manifest_reads == 1, "the first check reading the manifest")
        others = [pool.submit(reloader.reload, retry_refused=True) for _ in range(3)]
        wait_until(lambda: reloader.joined == 3, "three checks joining the one in flight")
        store.gate.set()
        outcomes = [first.result(timeout=60)] + [o.result(timeout=60) for o in others]
    assert store.manifest_reads == 1  # one load for four checks
    assert {o.status for o in outcomes} == {"refused"}
    assert len(set(outcomes)) == 1
    assert "checksum mismatch" in outcomes[0].error
    assert sum("refused bundle" in r.getMessage() for r in caplog.records) == 1
    # Once the flight has landed, a new check runs again (a joined one is not cached forever).
    assert reloader.reload(retry_refused=True).status == "refused"
    assert store.manifest_reads == 2


class FreezingStore:
    """The real S3 storage; just before the first read of `name`, the S3 server is frozen
    (SIGSTOP), as a store that stops answering mid-load."""

    def __init__(self, inner: S3Storage, server_pid: int, name: str):
        self._inner, self._pid, self._name = inner, server_pid, name
        self.froze = False

    def read_bytes(self, uri: str) -> bytes:
        if uri.endswith("/" + self._name) and not self.froze:
            self.froze = True
            os.kill(self._pid, signal.SIGSTOP)
        return self._inner.read_bytes(uri)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.fixture
def frozen_s3(tmp_path, monkeypatch):
    """Its own moto server (frozen by the tests), its env set for this process."""
    with moto_server(log_path=tmp_path / "moto.log") as s3:
        for key, value in s3.env.items():
            monkeypatch.setenv(key, value)
        s3.client().create_bucket(Bucket="reload-faults")
        try:
            yield s3
        finally:
            os.kill(s3.proc.pid, signal.SIGCONT)


def test_a_store_outage_during_a_load_is_retried_at_the_next_check(frozen_s3):
    root = "s3://reload-faults/bundles"
    storage = S3Storage()
    version = pixels_version(root, storage)
    publish(root, version, storage)
    store = FreezingStore(storage, frozen_s3.proc.pid, "thresholds.npy")
    holder = ModelHolder()
    reloader = Reloader(holder, Settings(artifacts_uri=root), threading.Lock(), storage=store)

    outage = reloader.reload()
    assert store.froze
    assert outage.status == "unavailable", outage
    assert holder.current is None
    assert "thresholds.npy" in outage.error and "reload-faults" not in outage.error

    os.kill(frozen_s3.proc.pid, signal.SIGCONT)
    # The poller's check (no retry of refused versions) loads it now: nothing was remembered.
    back = reloader.reload()
    assert back.status == "reloaded", back
    assert holder.current is not None and holder.current.version == version


def test_admin_reload_answers_503_while_the_store_is_down(frozen_s3, tmp_path):
    root = "s3://reload-faults/served"
    storage = S3Storage()
    version = pixels_version(root, storage)
    publish(root, version, storage)
    env = {**frozen_s3.env, "ARTIFACTS_URI": root, "ADMIN_TOKEN": TOKEN, "RELOAD_INTERVAL_S": "0"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with running_service(env, log_path=tmp_path / "service.log") as (url, _):
        os.kill(frozen_s3.proc.pid, signal.SIGSTOP)
        try:
            down = httpx.post(f"{url}/v1/admin/reload", headers=auth, timeout=120)
        finally:
            os.kill(frozen_s3.proc.pid, signal.SIGCONT)
        assert down.status_code == 503, down.text
        error = down.json()["error"]
        assert error["code"] == "storage_unavailable"
        assert version in error["message"]  # still serving it
        assert "reload-faults" not in error["message"] and "127.0.0.1" not in error["message"]
        assert httpx.get(f"{url}/readyz", timeout=10).json()["version"] == version
        up = httpx.post(f"{url}/v1/admin/reload", headers=auth, timeout=120)
        assert up.status_code == 200 and up.json()["status"] == "unchanged", up.text


@pytest.mark.slow
def test_twenty_reloads_under_load_give_no_error_and_consistent_answers(job_run, tmp_path):
    # 16 clients classify without pause while 20 versions are published and reloaded through
    # the admin endpoint (the poller checks too): no answer may fail, and each must come from
    # the version its header names. Bounded: each client makes at most 400 requests.
    from tests.artifacts import republish
    from tests.support import fixture_photos, post_photo

    src, _ = job_run
    root = str(tmp_path / "bundles")
    versions = [republish(str(src), root)]
    env = {"ARTIFACTS_URI": root, "ADMIN_TOKEN": TOKEN, "RELOAD_INTERVAL_S": "0.5"}
    photo = fixture_photos("Test", "Banana")[0].read_bytes()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    stop = threading.Event()
    with running_service(env, log_path=tmp_path / "service.log") as (url, _):

        def client(_):
            seen = []
            for _ in range(400):
                if stop.is_set():
                    break
                try:
                    resp = post_photo(url, photo, timeout=60)
                except httpx.HTTPError as exc:
                    seen.append(("error", type(exc).__name__, None))
                    continue
                body = resp.json()
                seen.append((resp.status_code, resp.headers.get("x-model-version"), body.get("model", {})))
            return seen

        with ThreadPoolExecutor(16) as pool:
            clients = [pool.submit(client, i) for i in range(16)]
            reloads = []
            for _ in range(20):
                versions.append(republish(str(src), root))
                reloads.append(httpx.post(f"{url}/v1/admin/reload", headers=auth, timeout=120))
            stop.set()
            answers = [a for c in clients for a in c.result(timeout=600)]
    assert all(r.status_code == 200 for r in reloads), [r.text for r in reloads if r.status_code != 200]
    assert reloads[-1].json()["serving"] == versions[-1]
    assert len(answers) >= 16
    errors = [a for a in answers if a[0] != 200]
    assert not errors, errors[:5]
    for _, header, model in answers:
        assert header == model["version"] and header in versions
    assert len({header for _, header, _ in answers}) > 1  # the load did span reloads
