"""A real S3 endpoint for tests: the moto server on 127.0.0.1 (stands in for MinIO/AWS)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port, stop_process

# Distinctive fake credentials: tests assert that neither ever shows up in a log or an error.
ACCESS_KEY_ID = "AKIAFRUITSLEAKCHECK7"
SECRET_ACCESS_KEY = "fruits-Secret-must-never-be-logged-5f3c9a1e"


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    proc: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS settings a job or service process needs to reach this endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            # Short and few retries keep the fault tests quick; still botocore's retry logic.
            "FRUITS_S3_MAX_ATTEMPTS": "2",
            "FRUITS_S3_TIMEOUT_S": "3",
        }

    def bucket_for_this_process(self, monkeypatch, bucket: str):
        """Points this process at the endpoint (its env set through `monkeypatch`), creates
        `bucket` and returns the S3Storage that sees it."""
        from models.storage import S3Storage

        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        self.client().create_bucket(Bucket=bucket)
        return S3Storage()

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name="us-east-1",
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=10
            ),
        )


@contextlib.contextmanager
def moto_server(log_path: Path | None = None, timeout_s: float = 60) -> Iterator[S3Endpoint]:
    """Start `python -m moto.server` on a free loopback port; stop it afterwards."""
    port = free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    endpoint = S3Endpoint(f"http://127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + timeout_s
        client = endpoint.client()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode}")
            try:
                client.list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"moto server not up after {timeout_s} s") from None
                time.sleep(0.25)
        yield endpoint
    finally:
        stop_process(proc, timeout_s=15)
        if log_path:
            log.close()


def upload_tree(client, folder: Path, bucket: str, prefix: str) -> list[str]:
    """Upload every file under `folder` to s3://bucket/prefix/<relative path>; returns the URIs."""
    uris = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}"
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        uris.append(f"s3://{bucket}/{key}")
    return uris


def read_text(client, uri: str) -> str | None:
    """An object's text, or None when it does not exist."""
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except client.exceptions.NoSuchKey:
        return None
