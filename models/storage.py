"""One URI-based storage layer: local paths and s3:// share every caller's code path."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.faults import checkpoint


@dataclass(frozen=True)
class FileInfo:
    uri: str
    size: int
    etag: str  # S3 ETag, or "mtime_ns-size" locally: changes when the content does


class Storage(Protocol):
    def read_bytes(self, uri: str) -> bytes: ...
    def write_bytes(self, uri: str, data: bytes) -> None: ...
    def exists(self, uri: str) -> bool: ...
    def list_files(self, uri: str) -> list[FileInfo]: ...
    def delete_prefix(self, uri: str) -> None: ...
    def read_with_token(self, uri: str) -> tuple[bytes, str] | None: ...
    def write_if_unchanged(self, uri: str, data: bytes, token: str | None) -> bool: ...


class StorageError(RuntimeError):
    """An I/O failure with a message safe to log (no credentials)."""


class StorageUnavailable(StorageError):
    """The store itself failed (unreachable, timing out, 5xx) after botocore's bounded retries:
    unlike a missing or unreadable object, retrying the next file will not help."""


def is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file") or (len(uri) > 1 and uri[1] == ":")


def local_path(uri: str) -> str:
    return urlparse(uri).path if uri.startswith("file://") else uri


def join(base: str, *parts: str) -> str:
    """Join path parts onto a URI with '/', whatever the scheme."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_photos(uri: str) -> list[tuple[FileInfo, str]]:
    """Every .jpg/.jpeg/.png under `uri`, recursively, with its label: the parent folder's
    name, as in Fruits-360's <split>/<class>/ layout. Hidden files are left out."""
    return [
        (f, parent_name(f.uri))
        for f in storage_for(uri).list_files(uri)
        if f.uri.lower().endswith(PHOTO_EXTENSIONS) and not f.uri.rsplit("/", 1)[-1].startswith(".")
    ]


def parent_name(uri: str) -> str:
    """Name of the folder holding a file: the class label in Fruits-360's layout."""
    parts = uri.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else ""


# Files get the mode the process's umask allows (mkstemp alone makes them 0600, which a service
# running as another user cannot read). Read once: os.umask can only be read by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


# A lock file older than this was left by a killed writer (a guarded write takes milliseconds).
LOCK_STALE_S = 30.0
_LOCK_WAIT_S, _LOCK_POLL_S = 10.0, 0.02


def _holder_dead(lock: Path) -> bool:
    """The lock's writer was a process of this machine that no longer runs (killed while it
    held the lock): the next job need not wait LOCK_STALE_S for it."""
    try:
        host, pid = lock.read_text().split()
        if host != socket.gethostname() or int(pid) == os.getpid():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):  # being written, of another owner, or of an older format
        return False
    return False


def _abandoned(lock: Path) -> bool:
    """The lock file was left by a killed writer: too old, or its holder no longer runs."""
    return time.time() - lock.stat().st_mtime > LOCK_STALE_S or _holder_dead(lock)


def _claim_abandoned(lock: Path) -> bool:
    """Move an abandoned lock out of the way by renaming it to a unique name: of the waiters that
    judged it abandoned, only one rename succeeds. The file moved is judged again, since a live
    lock may have replaced the abandoned one meanwhile; such a lock is put back."""
    claimed = lock.with_name(f"{lock.name}.{uuid.uuid4().hex}")
    try:
        os.rename(lock, claimed)
    except FileNotFoundError:
        return False  # another waiter claimed it first
    if _abandoned(claimed):
        claimed.unlink()
        return True
    os.rename(claimed, lock)
    return False


def _remove_temp_leftovers(path: Path) -> None:
    """Delete write_bytes's temporary files of `path` (.<name>.XXXXXXXX) left by writers killed
    before their rename; its lock files (.<name>.lock...) stay."""
    for p in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if not p.name.startswith(f".{path.name}.lock"):
            p.unlink(missing_ok=True)


class LocalStorage:
    def read_with_token(self, uri: str) -> tuple[bytes, str] | None:
        """The file and a token of its content (its SHA-256); None when it does not exist."""
        try:
            data = self.read_bytes(uri)
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def write_if_unchanged(self, uri: str, data: bytes, token: str | None) -> bool:
        """Write only if the file still has the content `token` names (None: still absent);
        under a lock file, so two writers cannot both pass the check. False: it changed."""
        path = Path(local_path(uri))
        with self._locked(path):
            # Every conditional writer of this file holds the lock: no temp file of it is live now.
            _remove_temp_leftovers(path)
            now = self.read_with_token(uri)
            if (now[1] if now else None) != token:
                return False
            self.write_bytes(uri, data)
            return True

    @staticmethod
    @contextlib.contextmanager
    def _locked(path: Path) -> Iterator[None]:
        lock = path.with_name(f".{path.name}.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
                os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
                os.close(fd)
                break
            except FileExistsError:
                with contextlib.suppress(FileNotFoundError):
                    if _abandoned(lock) and _claim_abandoned(lock):
                        continue
                if time.monotonic() > deadline:
                    raise StorageError(f"{lock} is held for more than {_LOCK_WAIT_S:.0f} s") from None
                time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)

    def read_bytes(self, uri: str) -> bytes:
        return Path(local_path(uri)).read_bytes()

    def write_bytes(self, uri: str, data: bytes) -> None:
        # Write-then-rename, so a reader never sees half a file.
        path = Path(local_path(uri))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            checkpoint(f"rename:{path.name}")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The rename itself is durable only once the folder's entry is on disk.
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def exists(self, uri: str) -> bool:
        return Path(local_path(uri)).exists()

    def list_files(self, uri: str) -> list[FileInfo]:
        root = Path(local_path(uri))
        if root.is_file():
            candidates = [root]
        elif root.is_dir():
            candidates = sorted(p for p in root.rglob("*") if p.is_file())
        else:
            raise StorageError(f"input not found: {uri}")
        out = []
        for p in candidates:
            st = p.stat()
            out.append(FileInfo(str(p), st.st_size, f"{st.st_mtime_ns}-{st.st_size}"))
        return out

    def delete_prefix(self, uri: str) -> None:
        import shutil

        path = Path(local_path(uri))
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


class S3Settings(BaseSettings):
    """How hard S3 calls try, from FRUITS_S3_* in the environment; read when the first S3
    storage of a process (driver, executor or service) is made."""

    model_config = SettingsConfigDict(env_prefix="FRUITS_S3_", extra="ignore")

    max_attempts: int = Field(5, ge=1, description="botocore's attempts per call, the first included")
    timeout_s: float = Field(20.0, gt=0, description="connect and read timeout of one attempt")


class S3Storage:
    """s3://bucket/key through boto3; credentials and endpoint from the standard AWS config
    (environment, profile, instance role, AWS_ENDPOINT_URL), with botocore's bounded retries."""

    def __init__(self, settings: S3Settings | None = None):
        import boto3
        from botocore.config import Config

        settings = settings or S3Settings()
        config = Config(
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            connect_timeout=settings.timeout_s,
            read_timeout=settings.timeout_s,
        )
        self._client = boto3.session.Session().client("s3", config=config)

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        return parsed.netloc, parsed.path.lstrip("/")

    def _call(self, what: str, uri: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            error = StorageUnavailable if status >= 500 else StorageError
            raise error(f"S3 {what} failed for {uri}: {code}") from None
        except BotoCoreError as exc:
            # The botocore message names the endpoint, never the credentials.
            raise StorageUnavailable(f"S3 {what} failed for {uri}: {type(exc).__name__}: {exc}") from None

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = self._split(uri)
        # The body streams after the response headers: read it inside the same error mapping.
        return self._call("read", uri, lambda: self._client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self._split(uri)
        self._call("write", uri, self._client.put_object, Bucket=bucket, Key=key, Body=data)

    def read_with_token(self, uri: str) -> tuple[bytes, str] | None:
        """The object and its ETag; None when it does not exist."""
        from botocore.exceptions import ClientError

        bucket, key = self._split(uri)

        def get() -> tuple[bytes, str] | None:
            try:
                got = self._client.get_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
            return got["Body"].read(), got["ETag"]

        return self._call("read", uri, get)

    def write_if_unchanged(self, uri: str, data: bytes, token: str | None) -> bool:
        """A conditional PUT: If-Match the ETag read before (If-None-Match: * when there was no
        object). S3 itself refuses the write if another writer came first. False: it changed."""
        from botocore.exceptions import ClientError

        bucket, key = self._split(uri)
        condition = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}

        def put() -> bool:
            try:
                self._client.put_object(Bucket=bucket, Key=key, Body=data, **condition)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
            return True

        return self._call("write", uri, put)

    def exists(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = self._split(uri)

        def head() -> bool:
            try:
                self._client.head_object(Bucket=bucket, Key=key)
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise

        return self._call("head", uri, head)

    def list_files(self, uri: str) -> list[FileInfo]:
        bucket, prefix = self._split(uri)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        out = []
        paginator = self._client.get_paginator("list_objects_v2")
        pages = self._call("list", uri, lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix)))
        for page in pages:
            for obj in page.get("Contents", []):
                out.append(FileInfo(f"s3://{bucket}/{obj['Key']}", obj["Size"], obj["ETag"].strip('"')))
        return sorted(out, key=lambda f: f.uri)

    def delete_prefix(self, uri: str) -> None:
        """The object named `uri` and every object under `uri`/, as rmtree or unlink does locally."""
        bucket, key = self._split(uri)
        keys = ([key] if key else []) + [self._split(f.uri)[1] for f in self.list_files(uri)]
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            self._call("delete", uri, self._client.delete_objects, Bucket=bucket, Delete={"Objects": chunk})


@cache
def _s3() -> S3Storage:
    return S3Storage()


_LOCAL = LocalStorage()


def storage_for(uri: str) -> Storage:
    """The storage that serves `uri` (one client per process, reused)."""
    scheme = urlparse(uri).scheme
    if is_local(uri):
        return _LOCAL
    if scheme in ("s3", "s3a"):
        return _s3()
    raise StorageError(f"unsupported URI scheme {scheme!r} in {uri}; use a path or s3://")
