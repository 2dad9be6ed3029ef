"""S3Storage.delete_prefix on a real S3 endpoint: like the local one, it removes the object named
by the URI as well as everything under it, and nothing beside them."""

from __future__ import annotations

from models.bundle import drop_lease, running_jobs, take_lease

BUCKET = "storage-deletes"


def test_s3_delete_prefix_removes_one_object_or_a_folder_and_nothing_beside(s3, monkeypatch):
    storage = s3.bucket_for_this_process(monkeypatch, BUCKET)
    root = f"s3://{BUCKET}/bundles"
    for name in ("v1/manifest.json", "v1/features/part-0", "v10/manifest.json", "v1.json"):
        storage.write_bytes(f"{root}/{name}", b"x")

    storage.delete_prefix(f"{root}/v1/manifest.json")  # one object, by its own key
    assert [f.uri.removeprefix(root) for f in storage.list_files(root)] == [
        "/v1.json",
        "/v1/features/part-0",
        "/v10/manifest.json",
    ]
    storage.delete_prefix(f"{root}/v1")  # a folder: not v1.json, not v10/
    assert [f.uri.removeprefix(root) for f in storage.list_files(root)] == ["/v1.json", "/v10/manifest.json"]

    # What that means for a job's lease: dropped when the job ends, it protects nothing any more.
    take_lease(root, "v2", storage)
    assert running_jobs(root, storage) == ["v2"]
    drop_lease(root, "v2", storage)
    assert running_jobs(root, storage) == []
