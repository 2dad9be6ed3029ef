"""Helpers shared by the tests: where the real data is, and a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FRUITS360_DIR", REPO_ROOT.parent / "shared/data/fruits360"))
TEST_IMAGE_SIZE = 64  # small input keeps CI fast; the code path is the same as at 224
TEST_WEIGHTS = "random:0"


def shared_photos(split: str, label: str) -> list[Path]:
    folder = SHARED_DATA / split / label
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: the tests need ../shared/data/fruits360")
    return sorted(folder.glob("*.jpg"))


def copy_photos(dest: Path, split: str, labels: list[str], per_class: int) -> Path:
    """Copy the first `per_class` photos of each label into dest/<label>/."""
    for label in labels:
        (dest / label).mkdir(parents=True, exist_ok=True)
        for photo in shared_photos(split, label)[:per_class]:
            shutil.copy(photo, dest / label / photo.name)
    return dest


def encode(img, fmt: str, **kw) -> bytes:
    """A Pillow image saved to bytes in `fmt` (test uploads in every format)."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header claims width x height (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


def stop_process(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """Terminate a server we started; kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def running_service(
    env: dict[str, str],
    log_path: Path | None = None,
    ready: bool = True,
    ready_timeout_s: float = 120,
    cwd: Path = REPO_ROOT,
):
    """Start `python -m service` (uvicorn) on a free loopback port; stop it afterwards.

    `cwd`: the checkout whose service runs (another one serves a before/after comparison)."""
    port = free_port()
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if ready:
            wait_ready(url, proc, timeout_s=ready_timeout_s)
        yield url, proc
    finally:
        stop_process(proc)
        if log_path:
            log.close()
