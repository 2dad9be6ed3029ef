"""Helpers shared by the tests: where the real photos are, and images built for upload cases.

The service runs as a child process through `service.launch` (re-exported here)."""

from __future__ import annotations

import io
import logging
import shutil
import struct
import time
import zlib
from pathlib import Path

import httpx

from service.launch import REPO_ROOT, free_port, running_service, stop_process, wait_ready

# Real Fruits-360 photos, committed: only those the tests read (see its ATTRIBUTION.md).
TEST_DATA = Path(__file__).resolve().parent / "data" / "fruits360"
TEST_IMAGE_SIZE = 64  # small input keeps CI fast; the code path is the same as at 224
TEST_WEIGHTS = "random:0"


class LogLines(logging.Handler):
    """Collects the messages of the INFO and higher records it is given."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def fixture_photos(split: str, label: str) -> list[Path]:
    """The committed photos of one class, sorted by name."""
    folder = TEST_DATA / split / label
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: add the photos to tests/data/fruits360")
    return sorted(folder.glob("*.jpg"))


def copy_photos(dest: Path, split: str, labels: list[str], per_class: int) -> Path:
    """Copy the first `per_class` photos of each label into dest/<label>/."""
    for label in labels:
        (dest / label).mkdir(parents=True, exist_ok=True)
        for photo in fixture_photos(split, label)[:per_class]:
            shutil.copy(photo, dest / label / photo.name)
    return dest


def photo_form(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg") -> dict:
    """The multipart `files=` of an upload: the photo in the field `file`."""
    return {"file": (name, data, content_type)}


def post_photo(
    url: str,
    data: bytes,
    *,
    path: str = "/v1/classify",
    name: str = "photo.jpg",
    content_type: str = "image/jpeg",
    timeout: float = 60,
    **kwargs,
) -> httpx.Response:
    """POST a photo to the live service (classify by default, or `path`): every test's call.
    `kwargs` go to httpx (params=, headers=)."""
    return httpx.post(f"{url}{path}", files=photo_form(data, name, content_type), timeout=timeout, **kwargs)


def encode(img, fmt: str, **kw) -> bytes:
    """A Pillow image saved to bytes in `fmt` (test uploads in every format)."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + kind + data + crc


def png_declaring(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header claims width x height (a decompression bomb's shape)."""
    chunk = _png_chunk
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def flat_png16(width: int, height: int, level: int = 0x9ABC) -> bytes:
    """A valid 16-bit greyscale PNG of one flat grey: ~140 KB at 8000x8000, 128 MB decoded."""
    row = b"\x00" + level.to_bytes(2, "big") * width  # filter byte "none", then the pixels
    packer = zlib.compressobj(9)
    idat = b"".join([packer.compress(row) for _ in range(height)] + [packer.flush()])
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def process_memory_mb(pid: int) -> dict[str, float]:
    """A live process's resident memory from /proc: {"VmRSS": now, "VmHWM": peak}, in MB."""
    with open(f"/proc/{pid}/status") as fh:
        fields = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


__all__ = ["REPO_ROOT", "free_port", "running_service", "stop_process", "wait_ready"]


def wait_for_version(url: str, version: str, timeout_s: float = 60) -> None:
    """Poll /readyz (bounded) until the service answers with `version`: a hot reload landed."""
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{url}/readyz", timeout=10).json()["version"] != version:
        assert time.monotonic() < deadline, f"service did not pick up {version} in {timeout_s} s"
        time.sleep(0.5)


def expected_embedding(vdir: Path, features):
    """A feature vector's embedding recomputed with numpy from a version's stored arrays:
    L2-normalised, centred and scaled (a scale of 0 drops the column), projected."""
    import numpy as np

    raw = np.asarray(features, dtype=np.float64)
    unit = raw / np.linalg.norm(raw)
    scale = np.load(vdir / "scaler_scale.npy")
    centred = (unit - np.load(vdir / "scaler_mean.npy")) / np.where(scale > 0, scale, np.inf)
    return centred @ np.load(vdir / "pca_components.npy").T


def expected_answer(vdir: Path, features, fruit_of: dict[str, str]) -> tuple[list[str], float, float]:
    """The answer recomputed with numpy from a version's stored arrays (an expectation
    independent of models/): (classes best first, p(the best's fruit), the best's distance).
    Each class is as near as its nearest row (views farther by the view factor); p(fruit) = the
    mean of the probe's softmax and the neighbours' softmax summed over the fruit's classes; a
    class scores p(fruit) x its softmax among the fruit's classes. fruit_of: label -> fruit id."""
    import json

    import numpy as np

    def softmax(v):
        e = np.exp(v - v.max())
        return e / e.sum()

    load = lambda name: np.load(vdir / f"{name}.npy")  # noqa: E731
    manifest = json.loads((vdir / "manifest.json").read_text())
    z = expected_embedding(vdir, features)
    factor = manifest["calibration"]["view_distance_factor"]
    dists = np.sqrt(((load("embeddings") - z) ** 2).sum(1)) * np.where(load("views") > 0, factor, 1.0)
    labels, classes = load("labels"), load("classes").tolist()
    nearest = np.array([dists[labels == c].min() for c in classes])
    t = manifest["calibration"]["temperature"]
    neighbours = softmax(-nearest / t)
    fruits = load("probe_fruits").tolist()
    probe = softmax(z @ load("probe_coef").T + load("probe_intercept"))
    fruit = np.array([fruit_of[c] for c in classes])
    p_fruit = {f: (probe[i] + neighbours[fruit == f].sum()) / 2 for i, f in enumerate(fruits)}
    score = np.zeros(len(classes))
    for f in fruits:
        members = np.flatnonzero(fruit == f)
        score[members] = p_fruit[f] * softmax(-nearest[members] / t)
    order = np.argsort(-score, kind="stable")
    best = int(order[0])
    return [classes[j] for j in order], p_fruit[fruit[best]], float(nearest[best])
