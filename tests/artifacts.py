"""Test helpers that republish a real bundle under new version ids, intact or broken."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable

import numpy as np

from models.bundle import (
    MANIFEST,
    POINTER,
    ArtifactBundle,
    new_version_id,
    publish,
    read_bundle,
    version_uri,
    write_version,
)
from models.storage import Storage, join, storage_for


def republish(
    src_root: str,
    dst_root: str,
    *,
    point: bool = True,
    edit: Callable[[ArtifactBundle], None] | None = None,
    storage: Storage | None = None,
    version: str | None = None,
) -> str:
    """Copy the current bundle of `src_root` to `dst_root` as a new version (arrays + manifest;
    not the features Parquet), publish it unless point=False; returns the new version id."""
    bundle = read_bundle(str(src_root))
    version = version or new_version_id()
    bundle.manifest = bundle.manifest.model_copy(deep=True, update={"version": version})
    if edit:
        edit(bundle)
    write_version(str(dst_root), bundle, storage)
    if point:
        publish(str(dst_root), version, storage)
    return version


def point_at(root: str, version: str) -> None:
    """Move CURRENT without publish()'s read-back check: how a bad version could reach it
    (written by an older job, corrupted on the store after publishing, a hand edit)."""
    storage_for(str(root)).write_bytes(join(str(root), POINTER), (version + "\n").encode())


def replace_file(root: str, version: str, name: str, data: bytes, *, fix_checksum: bool) -> None:
    """Overwrite one file of a version; with fix_checksum the manifest is updated to match,
    so only the deeper checks (shapes, model compatibility) can catch the change."""
    storage = storage_for(str(root))
    vdir = version_uri(str(root), version)
    storage.write_bytes(join(vdir, name), data)
    if fix_checksum:
        manifest = json.loads(storage.read_bytes(join(vdir, MANIFEST)))
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        storage.write_bytes(join(vdir, MANIFEST), json.dumps(manifest).encode())


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
