"""S3 end to end on a real HTTP endpoint: photos in a bucket -> job -> bundle on S3 -> service."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.bundle import (
    current_version,
    list_versions,
    new_version_id,
    read_bundle,
    version_uri,
)
from models.storage import LocalStorage, S3Storage
from tests.artifacts import republish
from tests.conftest import LABELS
from tests.jobs import run_job_cli
from tests.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, upload_tree
from tests.support import (
    TEST_IMAGE_SIZE,
    TEST_WEIGHTS,
    fixture_photos,
    post_photo,
    running_service,
    wait_for_version,
)

BUCKET = "fruits-e2e"
PHOTOS = f"s3://{BUCKET}/photos/Training"
ROOT = f"s3://{BUCKET}/bundles"
JOB_ARGS = [
    "--input",
    PHOTOS,
    "--output",
    ROOT,
    "--weights",
    TEST_WEIGHTS,
    "--image-size",
    str(TEST_IMAGE_SIZE),
    "--precision",
    "fp32",  # as the local run it is compared with; the CLI's default follows the CPU
    "--master",
    "local[2]",
    "--images-per-partition",
    "32",
    "--keep-versions",
    "2",
]


def features_by_photo(storage, files: list[str], prefix: str) -> pd.Series:
    """Features keyed by the photo's path below the input root (so S3 and local runs compare)."""
    frames = [pq.read_table(io.BytesIO(storage.read_bytes(f))).to_pandas() for f in files]
    frame = pd.concat(frames)
    frame.index = [f"{u.removeprefix(prefix)}#{v}" for u, v in zip(frame["uri"], frame["view"], strict=True)]
    return frame["features"].sort_index()


def classify_all(url: str, photos: list[bytes]) -> list[dict]:
    out = []
    for photo in photos:
        resp = post_photo(url, photo)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-model-version"] == resp.json()["model"]["version"]
        out.append(resp.json())
    return out


@pytest.mark.slow
@pytest.mark.spark
def test_s3_photos_to_bundle_to_service_with_refresh_and_restart(s3, dataset, job_run, tmp_path, monkeypatch):
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    storage = S3Storage()  # this process's view of the bucket, through the same storage layer
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    upload_tree(client, dataset / "Training", BUCKET, "photos/Training")
    local_root, local_result = job_run

    # Two older versions, so retention (--keep-versions 2) has something to remove. Ids sort
    # by their UTC second: back-date them so the order is certain.
    now = datetime.now(UTC)
    oldest = republish(
        str(local_root), ROOT, storage=storage, version=new_version_id(now - timedelta(minutes=2))
    )
    previous = republish(
        str(local_root), ROOT, storage=storage, version=new_version_id(now - timedelta(minutes=1))
    )
    assert current_version(ROOT, storage) == previous

    logs = []
    rc, out = run_job_cli(JOB_ARGS, s3.env, tmp_path / "job1.log")
    logs.append(out)
    assert rc == 0, out[-3000:]
    v1 = current_version(ROOT, storage)
    assert v1 not in (None, oldest, previous)
    assert list_versions(ROOT, storage) == [previous, v1]
    assert storage.list_files(version_uri(ROOT, oldest)) == []  # removed, every file of it

    bundle = read_bundle(ROOT, storage=storage)
    m = bundle.manifest
    assert m.input_uri == PHOTOS
    assert m.counts.featurized == len(LABELS) * 16 + 1  # + the off-centre photo
    assert [s.uri for s in m.skipped] == [f"{PHOTOS}/Kiwi/corrupt_truncated.jpg"]
    assert all(src.startswith(f"{PHOTOS}/") for src in bundle.sources)
    # Bytes read from S3 by the executors give the features the local run got from disk.
    s3_features = features_by_photo(storage, m.features.files, PHOTOS)
    local_features = features_by_photo(
        LocalStorage(), local_result.manifest.features.files, str(dataset / "Training")
    )
    assert list(s3_features.index) == list(local_features.index)
    np.testing.assert_allclose(
        np.stack(s3_features.to_numpy()), np.stack(local_features.to_numpy()), rtol=1e-4, atol=1e-4
    )

    test_photos = [fixture_photos("Test", label)[0].read_bytes() for label in LABELS[:3]]
    env = {**s3.env, "ARTIFACTS_URI": ROOT, "RELOAD_INTERVAL_S": "1"}
    with running_service(env, log_path=tmp_path / "service1.log") as (url, _):
        first = classify_all(url, test_photos)
        assert {a["model"]["version"] for a in first} == {v1}
        # Examples are served by the service from the bucket, byte for byte, and name no URI.
        for a in first:
            label = a["top_k"][0]["label"]
            listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"photos/Training/{label}/")["Contents"]
            in_bucket = {client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}
            for e in a["top_k"][0]["examples"]:
                served = httpx.get(url + e["url"], timeout=30)
                assert served.status_code == 200 and served.content in in_bucket
            assert "s3://" not in str(a)

        # Photos change in the bucket; the refresh job runs while the service keeps serving.
        gone = f"photos/Training/{LABELS[0]}/{fixture_photos('Training', LABELS[0])[0].name}"
        client.delete_object(Bucket=BUCKET, Key=gone)
        for photo in fixture_photos("Training", "Banana")[40:42]:
            client.put_object(
                Bucket=BUCKET, Key=f"photos/Training/Banana/{photo.name}", Body=photo.read_bytes()
            )
        rc, out = run_job_cli([*JOB_ARGS, "--incremental"], s3.env, tmp_path / "job2.log")
        logs.append(out)
        assert rc == 0, out[-3000:]
        v2 = current_version(ROOT, storage)
        refresh = read_bundle(ROOT, storage=storage).manifest.refresh.model_dump()
        # 97 featurized before; one deleted; two added; the corrupt photo is tried again.
        assert (
            refresh["previous_version"],
            refresh["reused"],
            refresh["featurized"],
            refresh["dropped"],
        ) == (v1, 96, 3, 1)
        assert list_versions(ROOT, storage) == [v1, v2]

        wait_for_version(url, v2)  # hot reload from S3, no restart
        second = classify_all(url, test_photos)
        assert {a["model"]["version"] for a in second} == {v2}

    # Restart: the same version, and exactly the same answers.
    with running_service(env, log_path=tmp_path / "service2.log") as (url, _):
        assert httpx.get(f"{url}/readyz", timeout=10).json()["version"] == v2
        assert classify_all(url, test_photos) == second

    logs += [(tmp_path / f"service{i}.log").read_text(errors="replace") for i in (1, 2)]
    for text in logs:
        assert ACCESS_KEY_ID not in text and SECRET_ACCESS_KEY not in text
