"""Start `python -m service` as a child process on a free loopback port and wait until it is
ready: what the demo, the benchmarks and the tests need to talk to the real service over HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 120) -> None:
    """Poll `/readyz` until it answers 200; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the service exited with code {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


def stop_process(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """Terminate a child we started; kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# uvicorn's exit code when the server cannot start: among other causes, a port that another
# process took between free_port() and the child's bind (seen when two test runs shared a box).
STARTUP_FAILURE = 3
_PORT_ATTEMPTS = 3


@contextlib.contextmanager
def running_service(
    env: dict[str, str],
    log_path: Path | None = None,
    ready: bool = True,
    ready_timeout_s: float = 120,
    cwd: Path = REPO_ROOT,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run the service (uvicorn) on 127.0.0.1 with `env` added to ours; stop it afterwards.

    `cwd`: the checkout whose service runs (another one serves a before/after comparison).
    `log_path`: where its stdout and stderr go (default: discarded); `port`: default a free one,
    chosen again (up to 3 times) when the service fails to start, as it does if another process
    takes the port first."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in finally
    attempts = 1 if port or not ready else _PORT_ATTEMPTS
    proc = None
    try:
        for attempt in range(1, attempts + 1):
            chosen = port or free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(chosen)],
                env=full_env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{chosen}"
            if not ready:
                break
            try:
                wait_ready(url, proc, timeout_s=ready_timeout_s)
                break
            except RuntimeError:
                if proc.returncode != STARTUP_FAILURE or attempt == attempts:
                    raise
        yield url, proc
    finally:
        if proc is not None:
            stop_process(proc)
        if log_path:
            log.close()
