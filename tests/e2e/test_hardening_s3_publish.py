"""On S3 the publish is a conditional write (If-Match / If-None-Match): a job built on an older
snapshot cannot move CURRENT, whatever the timing, because the store itself refuses the write."""

from __future__ import annotations

import pytest

from models.bundle import PointerMoved, current_version, new_version_id, pointer_state, publish, write_version
from tests.models.test_bundle import make_bundle

BUCKET = "conditional-publish"


def test_s3_publish_refuses_a_moved_pointer(s3, monkeypatch):
    storage = s3.bucket_for_this_process(monkeypatch, BUCKET)
    root = f"s3://{BUCKET}/bundles"

    def written() -> str:
        bundle = make_bundle(new_version_id())
        write_version(root, bundle, storage)
        return bundle.version

    first, second = written(), written()
    empty = pointer_state(root, storage)
    assert empty.version is None and empty.token is None
    publish(root, first, storage, expected=empty)
    with pytest.raises(PointerMoved):  # If-None-Match: * - someone published first
        publish(root, second, storage, expected=empty)
    base = pointer_state(root, storage)
    assert base.version == first
    third = written()
    publish(root, third, storage, expected=pointer_state(root, storage))  # another job
    with pytest.raises(PointerMoved, match=f"from {first} to {third}"):  # If-Match: the old ETag
        publish(root, second, storage, expected=base)
    assert current_version(root, storage) == third
