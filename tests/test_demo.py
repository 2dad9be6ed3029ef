"""scripts/demo.py shows the job's stderr less the start-up notices that no log setting reaches:
everything else byte for byte, and a progress bar's frames (no newline) as they come."""

from __future__ import annotations

import importlib.util
import io
import os
import threading
import time

import pytest

from service.launch import REPO_ROOT

_spec = importlib.util.spec_from_file_location("demo", REPO_ROOT / "scripts" / "demo.py")
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)

ABSL = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = (
    b"I0000 00:00:1796220065.088929   12659 port.cc:153] oneDNN custom operations are on. You may see "
    b"slightly different numerical results due to floating-point round-off errors from different "
    b"computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
)
JVM = b"WARNING: Using incubator modules: jdk.incubator.vector\n"
FRAME = b"\r\x1b[2Kfeaturize \x1b[90m\xe2\x94\x81\xe2\x94\x81\x1b[0m 24/48 images   50.0%  (elapsed 3 s)"


class _Sink(io.BytesIO):
    """What the terminal got, readable while the copy runs."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def write(self, data):
        with self.lock:
            return super().write(data)

    def seen(self) -> bytes:
        with self.lock:
            return self.getvalue()


def forward(chunks: list[bytes], wait_for: dict[int, bytes] | None = None) -> bytes:
    """Write `chunks` one by one into a pipe that forward_without_notices copies; before chunk i,
    wait until the output shows wait_for[i] (it must pass without anything written after it)."""
    read_fd, write_fd = os.pipe()
    sink = _Sink()
    with os.fdopen(read_fd, "rb", buffering=0) as src:
        copier = threading.Thread(target=demo.forward_without_notices, args=(src, sink))
        copier.start()
        try:
            for i, chunk in enumerate(chunks):
                deadline = time.monotonic() + 5
                while (wait_for or {}).get(i, b"") not in sink.seen():
                    assert time.monotonic() < deadline, f"held back: {sink.seen()!r}"
                    time.sleep(0.01)
                os.write(write_fd, chunk)
                time.sleep(0.02)  # separate reads, as separate processes' writes are
        finally:
            os.close(write_fd)
            copier.join(timeout=10)
    return sink.getvalue()


def test_the_notices_go_and_every_other_line_stays():
    lines = [
        b"2026-12-02 14:01:08,153 INFO batch: found 48 photos\n",
        b"Traceback (most recent call last):\n",
    ]
    out = forward([ABSL, lines[0], ONEDNN, JVM, lines[1], ABSL + ONEDNN])
    assert out == b"".join(lines)


def test_a_notice_written_after_a_bar_frame_goes_and_the_frames_stay():
    out = forward([FRAME, ABSL, ONEDNN, FRAME, b"\n"])
    assert out == FRAME + FRAME + b"\n"


def test_a_bar_frame_is_shown_before_the_next_write():
    # The second chunk is written only once the first frame is out: a held frame fails here.
    out = forward([FRAME, FRAME + b"\n"], wait_for={1: FRAME})
    assert out == FRAME + FRAME + b"\n"


@pytest.mark.parametrize("cut", [1, 9, 40, len(ABSL) - 1])
def test_a_notice_split_between_two_reads_still_goes(cut):
    out = forward([FRAME + ABSL[:cut], ABSL[cut:], b"done\n"])
    assert out == FRAME + b"done\n"


def test_an_unfinished_line_that_only_looks_like_a_notice_is_kept():
    out = forward([b"WARN: the job stopped", b" early"])
    assert out == b"WARN: the job stopped early"
