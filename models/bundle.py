"""The versioned artifact bundle: its layout, writer and validating reader (arrays + JSON, no pickles).

Layout under a root URI (local folder or s3://bucket/prefix):

    CURRENT                         the current version's id; written last, after all else
    leases/<version>.json           a job running now (renewed while it runs, removed when it ends)
    versions/<version>/manifest.json
    versions/<version>/<array>.npy  ARRAY_FILES below, each listed with its SHA-256 in the manifest
    versions/<version>/catalog.json class information served with answers
    versions/<version>/search_index.bin  the rows' search index, when manifest search.kind is not
                                    exact (models/search.py; its SHA-256 in the manifest too)
    versions/<version>/features/    full 2048-d features as Parquet (written by the job)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import numpy as np
from pydantic import ValidationError

from models.catalog import validate_entries
from models.faults import checkpoint
from models.manifest import FileEntry, Manifest
from models.search import IndexedSearch, SearchIndexError
from models.storage import Storage, StorageUnavailable, is_local, join, local_path, storage_for

POINTER = "CURRENT"
MANIFEST = "manifest.json"
CATALOG = "catalog.json"
FEATURES_DIR = "features"
SEARCH_INDEX = "search_index.bin"
LEASES = "leases"
# A lease not renewed for this long is a killed job's: its folder may go, newer versions may be
# pruned. A running job renews its lease every LEASE_STALE / 3 (LeaseRenewer).
LEASE_STALE = timedelta(minutes=5)
# A version folder without a manifest and without a live lease, younger than this, is left alone
# (a job whose lease could not be written); older, it is a killed job's leftover and removed.
ORPHAN_GRACE = timedelta(hours=1)
_ID_TIME = "%Y%m%dT%H%M%SZ"
# What each format added: docs/job.md ("Bundle formats"). An optional search index came later
# without a new format: a format-6 bundle without one loads and searches exactly.
FORMAT_VERSION = 6

# name -> (description, dtype kind): the arrays every bundle carries.
ARRAY_FILES = {
    "scaler_mean": "mean of the L2-normalised features, (D,)",
    "scaler_scale": "per-feature factor after centring, (D,): 1 (centred, not standardised)",
    "pca_components": "PCA components (K, D) by variance, each times its weight (pca.component_weights), "
    "then mapped by the within-class metric (pca.within_class_shrink)",
    "plain_map": "(K, K): embeddings @ plain_map = plain PCA coordinates (undoes the metric and the weights)",
    "embeddings": "training rows projected by scaler+PCA, (N, K)",
    "labels": "class label of each row, (N,)",
    "sources": "URI of the training photo each row comes from, (N,)",
    "views": "0 for the photo itself, v >= 1 for its v-th augmented view, (N,)",
    "classes": "sorted class labels, (C,)",
    "thresholds": "per-class 'known' distance threshold, (C,)",
    "plain_thresholds": "the same in plain PCA coordinates (embeddings @ plain_map), (C,)",
    "probe_fruits": "the fruit probe's fruits, sorted, (F,)",
    "probe_coef": "the fruit probe's coefficients on the embeddings, (F, K)",
    "probe_intercept": "the fruit probe's intercepts, (F,)",
}

log = logging.getLogger("models.bundle")

# A version id is one path segment: letters, digits, '.', '_', '-', starting with a letter or
# digit (so never '.', '..' or a hidden name). new_version_id() makes 20261125T043000Z-1a2b3c.
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,99}$")


def valid_version_id(version: str) -> bool:
    return bool(_VERSION_RE.match(version))


class BundleError(RuntimeError):
    """A bundle that is missing, incomplete, corrupt or inconsistent. The message names the
    version and the check, never a path or a bucket: services may show it to clients."""


class PointerMoved(BundleError):
    """CURRENT changed between a job's start and its publish: another job published first."""


class BundleUnavailable(BundleError):
    """The store could not be read just now (unreachable, timing out, an I/O error): unlike the
    other BundleErrors, reading the same version again later may succeed."""


def _read_failure(version: str | None, what: str, exc: Exception) -> BundleError:
    """A read error as a BundleError, transient or not; the detail (paths) goes to the log only."""
    where = f"version {version}: " if version else ""
    log.warning("%scannot read %s: %s", where, what, exc)
    transient = isinstance(exc, StorageUnavailable) or (
        isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)
    )
    kind = BundleUnavailable if transient else BundleError
    return kind(f"{where}cannot read {what}")


def new_version_id(now: datetime | None = None) -> str:
    """Sortable, unique: 20261125T043000Z-1a2b3c."""
    now = now or datetime.now(UTC)
    return f"{now:{_ID_TIME}}-{uuid4().hex[:6]}"


def version_time(version: str) -> datetime | None:
    """When a version made by new_version_id was started; None for another kind of id."""
    try:
        return datetime.strptime(version.split("-", 1)[0], _ID_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def version_uri(root: str, version: str) -> str:
    return join(root, "versions", version)


@dataclass
class ArtifactBundle:
    manifest: Manifest
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    pca_components: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    views: np.ndarray
    classes: np.ndarray
    thresholds: np.ndarray
    plain_thresholds: np.ndarray
    plain_map: np.ndarray
    probe_fruits: np.ndarray
    probe_coef: np.ndarray
    probe_intercept: np.ndarray
    catalog: dict = field(default_factory=dict)
    # The rows' index when manifest.search.kind is not "exact" (None: every row is measured).
    search_index: IndexedSearch | None = None

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def label_idx(self) -> np.ndarray:
        return np.searchsorted(self.classes, self.labels)

    @property
    def photo_idx(self) -> np.ndarray:
        """The photo each row comes from, as an integer id (a photo's views share it)."""
        return np.unique(self.sources, return_inverse=True)[1]

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAY_FILES}

    def validate(self) -> None:
        """Shapes and values that every consumer relies on; raises BundleError."""
        k, d = self.pca_components.shape if self.pca_components.ndim == 2 else (-1, -1)
        n, c = len(self.labels), len(self.classes)
        checks = [
            (self.pca_components.ndim == 2, "pca_components must be 2-D"),
            (self.scaler_mean.shape == (d,), f"scaler_mean must be ({d},)"),
            (self.scaler_scale.shape == (d,), f"scaler_scale must be ({d},)"),
            (self.embeddings.shape == (n, k), f"embeddings must be ({n}, {k})"),
            (self.sources.shape == (n,), f"sources must be ({n},)"),
            (self.views.shape == (n,), f"views must be ({n},)"),
            (self.thresholds.shape == (c,), f"thresholds must be ({c},)"),
            (self.plain_thresholds.shape == (c,), f"plain_thresholds must be ({c},)"),
            (self.plain_map.shape == (k, k), f"plain_map must be ({k}, {k})"),
            (bool(np.isfinite(self.plain_map).all()), "plain_map holds NaN or inf"),
            (self.probe_coef.shape == (len(self.probe_fruits), k), f"probe_coef must be (F, {k})"),
            (self.probe_intercept.shape == self.probe_fruits.shape, "probe_intercept must be (F,)"),
            (bool(np.isfinite(self.probe_coef).all()), "probe_coef holds NaN or inf"),
            (
                list(self.probe_fruits) == sorted(set(self.probe_fruits.tolist())),
                "probe_fruits must be sorted",
            ),
            (len(self.manifest.pca.component_weights) == k, "manifest pca.component_weights disagrees"),
            (n > 0 and c > 0, "the bundle holds no training photos"),
            (list(self.classes) == sorted(set(self.classes.tolist())), "classes must be sorted"),
            (set(self.labels.tolist()) <= set(self.classes.tolist()), "labels outside classes"),
            (bool(np.isfinite(self.embeddings).all()), "embeddings hold NaN or inf"),
            (self.manifest.pca.k == k, "manifest pca.k disagrees"),
            (self.manifest.feature_dim == d, "manifest feature_dim disagrees"),
            (self.manifest.counts.rows == n, "manifest counts.rows disagrees"),
            (set(self.catalog) >= set(self.classes.tolist()), "catalog lacks a class"),
            *self._search_checks(n, k),
        ]
        for ok, message in checks:
            if not ok:
                raise BundleError(f"bundle {self.version}: {message}")

    def _search_checks(self, n: int, k: int) -> list[tuple[bool, str]]:
        spec, index = self.manifest.search, self.search_index
        if index is None:
            return [(spec.kind == "exact", f"manifest search.kind is {spec.kind} but there is no index")]
        info = index.info
        return [
            (spec.kind == info.kind, f"manifest search.kind {spec.kind} is not the index's {info.kind}"),
            ((info.rows, info.dim) == (n, k), f"the search index must cover ({n}, {k}) rows"),
            (
                (spec.lists, spec.nprobe, spec.seed) == (info.lists, info.nprobe, info.seed),
                "manifest search parameters disagree with the index's",
            ),
        ]


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_version(root: str, bundle: ArtifactBundle, storage: Storage | None = None) -> str:
    """Write every file of the version, then its manifest (with checksums); not the pointer."""
    storage = storage or storage_for(root)
    bundle.validate()
    vdir = version_uri(root, bundle.version)
    files = {}
    for name, arr in bundle.arrays().items():
        data = _npy_bytes(np.asarray(arr))
        storage.write_bytes(join(vdir, f"{name}.npy"), data)
        files[f"{name}.npy"] = FileEntry(sha256=_sha256(data), bytes=len(data))
        checkpoint(f"wrote:{name}.npy")
    catalog = json.dumps(bundle.catalog, indent=2, sort_keys=True, ensure_ascii=False).encode()
    storage.write_bytes(join(vdir, CATALOG), catalog)
    files[CATALOG] = FileEntry(sha256=_sha256(catalog), bytes=len(catalog))
    checkpoint(f"wrote:{CATALOG}")
    if bundle.search_index is not None:
        data = bundle.search_index.to_bytes()
        storage.write_bytes(join(vdir, SEARCH_INDEX), data)
        files[SEARCH_INDEX] = FileEntry(sha256=_sha256(data), bytes=len(data))
        del data
        checkpoint(f"wrote:{SEARCH_INDEX}")
    bundle.manifest.files = files
    bundle.manifest.format_version = FORMAT_VERSION
    storage.write_bytes(join(vdir, MANIFEST), bundle.manifest.model_dump_json(indent=2).encode())
    checkpoint(f"wrote:{MANIFEST}")
    return vdir


@dataclass(frozen=True)
class PointerState:
    """CURRENT as a job saw it when it started: the version, and the token that lets the
    publish be a conditional write (S3 ETag, or the local file's SHA-256); None: no pointer."""

    version: str | None
    token: str | None


def pointer_state(root: str, storage: Storage | None = None) -> PointerState:
    storage = storage or storage_for(root)
    got = storage.read_with_token(join(root, POINTER))
    if got is None:
        return PointerState(None, None)
    version = got[0].decode(errors="replace").strip()
    return PointerState(version if valid_version_id(version) else None, got[1])


def publish(
    root: str, version: str, storage: Storage | None = None, *, expected: PointerState | None = None
) -> None:
    """Point CURRENT at `version`, after re-reading and checking it: the last write of a run.

    With `expected` (CURRENT as the job saw it at its start), the write is conditional: if
    another job published meanwhile, PointerMoved is raised and CURRENT is left as it is."""
    storage = storage or storage_for(root)
    read_bundle(root, version, storage=storage)  # raises if anything is missing or corrupt
    data = (version + "\n").encode()
    if expected is None:
        storage.write_bytes(join(root, POINTER), data)
    elif not storage.write_if_unchanged(join(root, POINTER), data, expected.token):
        now = pointer_state(root, storage).version
        raise PointerMoved(
            f"CURRENT moved from {expected.version} to {now} since this job started: version "
            f"{version} is not published (it was built on an older snapshot)"
        )


def _lease_uri(root: str, version: str) -> str:
    return join(root, LEASES, f"{version}.json")


def take_lease(root: str, version: str, storage: Storage | None = None, now: datetime | None = None) -> None:
    """Mark `version` as a job running at `now`: for LEASE_STALE, retention keeps it and every
    newer version. Taking it again renews it."""
    storage = storage or storage_for(root)
    lease = {"version": version, "renewed_at": (now or datetime.now(UTC)).isoformat()}
    storage.write_bytes(_lease_uri(root, version), json.dumps(lease).encode())


class LeaseRenewer:
    """Takes a job's lease and renews it every `interval` on a daemon thread while the job runs,
    so that it expires within LEASE_STALE of the job's death. stop() ends the renewals; the
    caller then drops the lease."""

    def __init__(self, root: str, version: str, storage: Storage, interval: timedelta = LEASE_STALE / 3):
        self.root, self.version, self.storage, self.interval = root, version, storage, interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{version}", daemon=True)

    @property
    def renewing(self) -> bool:
        return self._thread.is_alive()

    def renew(self, now: datetime | None = None) -> None:
        take_lease(self.root, self.version, self.storage, now)

    def start(self) -> None:
        self.renew()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval.total_seconds()):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - the next renewal may get through
                log.warning("could not renew the lease of %s: %s", self.version, exc)


def drop_lease(root: str, version: str, storage: Storage | None = None) -> None:
    storage = storage or storage_for(root)
    storage.delete_prefix(_lease_uri(root, version))


def running_jobs(root: str, storage: Storage | None = None, now: datetime | None = None) -> list[str]:
    """Versions whose job holds a live lease (renewed less than LEASE_STALE ago), oldest first."""
    storage = storage or storage_for(root)
    now = now or datetime.now(UTC)
    try:
        files = storage.list_files(join(root, LEASES))
    except Exception:  # noqa: BLE001 - no leases folder: no job running
        return []
    running = []
    for f in files:
        try:
            lease = json.loads(storage.read_bytes(f.uri))
            renewed = datetime.fromisoformat(lease["renewed_at"])
        except Exception:  # noqa: BLE001 - a lease being written or removed right now
            continue
        if now - renewed < LEASE_STALE and valid_version_id(str(lease.get("version", ""))):
            running.append(lease["version"])
    return sorted(running)


def current_version(root: str, storage: Storage | None = None) -> str | None:
    storage = storage or storage_for(root)
    pointer = join(root, POINTER)
    if not storage.exists(pointer):
        return None
    version = storage.read_bytes(pointer).decode(errors="replace").strip()
    if not valid_version_id(version):
        raise BundleError(f"{POINTER} holds an invalid version id")
    return version


def read_manifest(root: str, version: str, storage: Storage | None = None) -> Manifest:
    """A version's manifest, parsed and validated; raises BundleError."""
    storage = storage or storage_for(root)
    if not valid_version_id(version):
        raise BundleError(f"{version!r} is not a version id")
    try:
        data = storage.read_bytes(join(version_uri(root, version), MANIFEST))
    except Exception as exc:
        raise _read_failure(version, MANIFEST, exc) from None
    try:
        raw = json.loads(data)
    except ValueError:
        raise BundleError(f"version {version}: unreadable manifest (not JSON)") from None
    made = raw.get("format_version") if isinstance(raw, dict) else None
    if made != FORMAT_VERSION:
        raise BundleError(
            f"version {version} has bundle format {made}; this code reads format "
            f"{FORMAT_VERSION}: rebuild it with the job"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"msg": str(exc), "loc": ()}
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"version {version}: invalid manifest ({where}: {first['msg']})") from None
    if manifest.version != version:
        raise BundleError(f"version {version}: its manifest names version {manifest.version}")
    return manifest


def read_bundle(root: str, version: str | None = None, *, storage: Storage | None = None) -> ArtifactBundle:
    """Load and fully validate a version (default: CURRENT); raises BundleError."""
    storage = storage or storage_for(root)
    try:
        version = version or current_version(root, storage)
    except BundleError:
        raise
    except Exception as exc:
        raise _read_failure(None, POINTER, exc) from None
    if version is None:
        raise BundleError(f"no bundle published under {root} (no {POINTER} file)")
    manifest = read_manifest(root, version, storage)
    vdir = version_uri(root, version)
    files = manifest.files
    loaded: dict[str, object] = {}
    for fname in [f"{n}.npy" for n in ARRAY_FILES] + [CATALOG]:
        if files.get(fname) is None:
            raise BundleError(f"version {version}: manifest does not list {fname}")
        data = _read_listed(storage, vdir, manifest, fname)
        if fname == CATALOG:
            loaded["catalog"] = _catalog(version, data)
        else:
            loaded[fname[:-4]] = np.load(io.BytesIO(data), allow_pickle=False)
    if manifest.search.kind != "exact":
        loaded["search_index"] = _search_index(storage, vdir, manifest)
    bundle = ArtifactBundle(manifest=manifest, **loaded)  # type: ignore[arg-type]
    bundle.validate()
    return bundle


def _read_listed(storage: Storage, vdir: str, manifest: Manifest, fname: str) -> bytes:
    """A file the manifest lists, its bytes checked against the listed SHA-256."""
    try:
        data = storage.read_bytes(join(vdir, fname))
    except Exception as exc:
        raise _read_failure(manifest.version, fname, exc) from None
    if _sha256(data) != manifest.files[fname].sha256:
        raise BundleError(f"version {manifest.version}: checksum mismatch in {fname}")
    return data


def _search_index(storage: Storage, vdir: str, manifest: Manifest) -> IndexedSearch:
    """The version's search index, its bytes checked against the manifest and then its own header."""
    version, meta = manifest.version, manifest.files.get(SEARCH_INDEX)
    if meta is None or manifest.search.file != SEARCH_INDEX:
        kind = manifest.search.kind
        raise BundleError(f"version {version}: manifest search is {kind} but lists no {SEARCH_INDEX}")
    data = _read_listed(storage, vdir, manifest, SEARCH_INDEX)
    try:
        return IndexedSearch.from_bytes(data)
    except SearchIndexError as exc:
        raise BundleError(f"version {version}: unusable {SEARCH_INDEX} ({exc})") from None


def _version_folders(root: str, storage: Storage) -> tuple[set[str], set[str]]:
    """(every version folder holding a file, those with a manifest)."""
    base = join(root, "versions")
    try:
        files = storage.list_files(base)
    except Exception:
        return set(), set()
    # Relative to this root's versions/ folder (the root itself may contain "/versions/"),
    # spelled as the storage lists it: local paths come back normalised, without file://.
    listed = str(Path(local_path(base))) if is_local(base) else base
    names = {
        f.uri[len(listed) :].lstrip("/").split("/", 1)[0] for f in files if f.uri.startswith(listed + "/")
    }
    return names, {v for v in names if any(f.uri.endswith(f"/{v}/{MANIFEST}") for f in files)}


def _catalog(version: str, data: bytes) -> dict:
    """The catalog, each entry as the service will answer it (a bad one is refused here, at
    load, rather than as a 500 from /v1/classes later)."""
    try:
        catalog = json.loads(data)
        validate_entries(catalog)
    except ValueError as exc:
        raise BundleError(f"version {version}: invalid {CATALOG} ({exc})") from None
    return catalog


def delete_version(root: str, version: str, storage: Storage | None = None) -> None:
    """Remove a version, its manifest first: a deletion killed halfway leaves a folder without a
    manifest, which nothing takes for a version (and retention removes later)."""
    storage = storage or storage_for(root)
    storage.delete_prefix(join(version_uri(root, version), MANIFEST))
    storage.delete_prefix(version_uri(root, version))


def list_versions(root: str, storage: Storage | None = None) -> list[str]:
    """Versions that have a manifest, oldest first."""
    return sorted(_version_folders(root, storage or storage_for(root))[1])


def prune_versions(
    root: str, keep_versions: int, keep: str, storage: Storage | None = None, now: datetime | None = None
) -> None:
    """Delete all but the newest `keep_versions` versions; never `keep` (the one just published),
    never a version younger than the oldest running job (it may be that job's base, or another
    job's output about to be published). Also removes version folders left without a manifest
    by a killed job: not leased by a running job, and older than ORPHAN_GRACE."""
    storage = storage or storage_for(root)
    now = now or datetime.now(UTC)
    running = running_jobs(root, storage, now)
    oldest_running = running[0] if running else None

    def protected(v: str) -> bool:
        return v == keep or v in running or (oldest_running is not None and v > oldest_running)

    folders, with_manifest = _version_folders(root, storage)
    versions = sorted(with_manifest)
    doomed = [v for v in versions[: max(0, len(versions) - keep_versions)] if not protected(v)]
    for v in sorted(folders - with_manifest):
        started = version_time(v)
        if not protected(v) and started is not None and now - started > ORPHAN_GRACE:
            doomed.append(v)
    for v in doomed:
        try:
            delete_version(root, v, storage)
            log.info("removed %s version %s", "old" if v in with_manifest else "incomplete", v)
            checkpoint("retention")
        except Exception as exc:  # noqa: BLE001 - a version left behind is not worth failing for
            log.warning("could not remove version %s: %s", v, exc)
